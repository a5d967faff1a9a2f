/* SPDX-License-Identifier: MIT */
/* Linked into every program and shared object of a coverage build (SHMRPC_COVERAGE), never
 * into a release. gcov writes a process's counters when it calls exit() or returns from
 * main; a process that ends by _exit() or by a signal writes nothing, and what ran in it
 * reads as never run. The servers' forked workers end by _exit (runtime/src/crew.c), test
 * children too, and servers are stopped by SIGTERM: so
 * - every call to _exit is sent here (the link's -Wl,--wrap=_exit), which writes the
 *   counters first;
 * - a process whose SIGTERM, SIGINT or SIGHUP still does the default (it dies) writes
 *   them, then dies of the signal as before (its status says the same signal).
 * A process killed by SIGKILL (on purpose, in the crash tests, or by a supervisor after its
 * grace) cannot write them: what ran only in such a process is not counted.
 * __gcov_dump writes the counters of every object of the process (the program and its
 * shared objects) once; the exit that follows writes nothing more. It is not
 * async-signal-safe: a signal that lands inside malloc could hang the process in a coverage
 * build, which is the price of counting what servers ran. */
#include <signal.h>
#include <string.h>

void __gcov_dump(void);
void __real__exit(int status) __attribute__((noreturn));

__attribute__((visibility("hidden"), noreturn)) void __wrap__exit(int status)
{
    __gcov_dump();
    __real__exit(status);
}

static void dump_and_die(int sig)
{
    __gcov_dump();
    signal(sig, SIG_DFL);
    raise(sig); /* blocked while its handler runs: delivered when the handler returns */
}

/* Only where the signal would kill: a program that sets its own handler, or ignores the
 * signal, later does so over this one. */
__attribute__((constructor)) static void dump_on_signals(void)
{
    static const int sigs[] = {SIGTERM, SIGINT, SIGHUP};
    for (size_t i = 0; i < sizeof sigs / sizeof sigs[0]; i++) {
        struct sigaction now;
        if (sigaction(sigs[i], NULL, &now) != 0 || now.sa_handler != SIG_DFL) continue;
        struct sigaction sa;
        memset(&sa, 0, sizeof sa);
        sa.sa_handler = dump_and_die;
        sigaction(sigs[i], &sa, NULL);
    }
}
