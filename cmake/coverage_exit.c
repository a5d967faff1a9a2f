/* SPDX-License-Identifier: MIT */
/* Linked into every program and shared object of a coverage build (SHMRPC_COVERAGE), never
 * into a release. gcov writes a process's counters when it calls exit() or returns from
 * main; a process that ends by _exit() or by a signal writes nothing, and what ran in it
 * reads as never run. The servers' forked workers end by _exit (runtime/src/rpc/crew.c), test
 * children too, and servers are stopped by SIGTERM: so
 * - every call to _exit is sent here (the link's -Wl,--wrap=_exit), which writes the
 *   counters first;
 * - a process whose SIGTERM, SIGINT or SIGHUP still does the default (it dies) writes
 *   them, then dies of the signal as before (its status says the same signal).
 * A process killed by SIGKILL (on purpose, in the crash tests, or by a supervisor after its
 * grace) cannot write them: what ran only in such a process is not counted.
 * __gcov_dump writes the counters of every object of the process (the program and its
 * shared objects) once; the exit that follows writes nothing more. It is not
 * async-signal-safe, and a process that hangs in it holds the lock of a .gcda file, which
 * every other process of the run that writes that file then waits for (a whole run of
 * timeouts, seen: a supervisor's child SIGTERMed inside the dump gcov does before execv).
 * So the handler does not dump when gcov's own lock is taken (the signal came inside a
 * dump, or another thread is in one), and, for a signal that lands inside malloc or stdio,
 * a watchdog: SIGALRM kills the process 2 s later, which lets the file go.
 * A program's own handler that calls _exit can land inside a dump too: a module manager's
 * probe child (shm_server.c's children_can_take) ends by _exit, which dumps here, and the
 * service's SIGTERM reaches it there; its handler (sup_module.c's on_stop) calls _exit,
 * whose dump then waited forever for the lock its own thread held: the manager waited for
 * that child, the supervisor for the manager until stop_timeout_s (web_proc_test's
 * test_module_address, seen), and a child that held a .gcda file's lock then held it up
 * for every process of the run that wrote that file. So _exit does not dump when this
 * thread holds the lock: the dump it interrupted will not go on, and what it had not
 * written yet is lost (as for a SIGKILL). */
#define _GNU_SOURCE /* gettid */
#include <pthread.h>
#include <signal.h>
#include <string.h>
#include <unistd.h>

void __gcov_dump(void);
void __real__exit(int status) __attribute__((noreturn));
extern pthread_mutex_t __gcov_mx; /* libgcov's, linked into this same object (hidden) */

/* Whether this thread holds gcov's lock: it is inside a dump, interrupted by a signal
 * whose handler called _exit. glibc records a mutex's owner (its thread id) for every
 * kind of mutex, __gcov_mx's default one included. */
static int dumping_here(void)
{
    return __gcov_mx.__data.__owner == gettid();
}

__attribute__((visibility("hidden"), noreturn)) void __wrap__exit(int status)
{
    if (!dumping_here()) __gcov_dump();
    __real__exit(status);
}

static void dump_and_die(int sig)
{
    struct sigaction dfl;
    memset(&dfl, 0, sizeof dfl);
    dfl.sa_handler = SIG_DFL;
    sigaction(SIGALRM, &dfl, NULL);
    sigset_t alrm;
    sigemptyset(&alrm);
    sigaddset(&alrm, SIGALRM);
    sigprocmask(SIG_UNBLOCK, &alrm, NULL);
    alarm(2);
    if (pthread_mutex_trylock(&__gcov_mx) == 0) {
        pthread_mutex_unlock(&__gcov_mx);
        __gcov_dump();
    }
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
