/* SPDX-License-Identifier: MIT */
/* Fault injection, as SQLite's harness does it: the Nth call of malloc, mmap, shm_open...
 * from now fails, with the errno natural to it, so that a test runs an operation with
 * each of its calls failing in turn. The calls are wrapped at link time (-Wl,--wrap), which
 * catches the calls of the program's own objects and of the statically linked runtime,
 * not those inside libc. Link with shmrpc_test_faults(target). */
#ifndef SHMRPC_TEST_FAULTS_H
#define SHMRPC_TEST_FAULTS_H

#include <stdbool.h>
#include <sys/types.h>

/* The nth (1, 2, ...) wrapped call from now fails, once; which, when not NULL or "", names
 * the functions counted and failed ("mmap,ftruncate"): the others pass untouched. A name
 * may say the errno to fail with ("recv:EINTR"); else each fails as it naturally does:
 * ENOMEM for allocations and mappings, EMFILE for what makes a descriptor, ENOSPC for
 * sizing, EAGAIN for fork and pthread_create... (faults.c's table). nth 0 counts only.
 * Only the calling process counts and fails, unless faults_inherit. */
void faults_arm(unsigned nth, const char *which);

/* With on, the processes that the arming process forks after faults_arm (a server's
 * workers) count and fail too, in one count with it: the nth call of the whole tree
 * fails, in whichever process makes it, and faults_hit tells it here. */
void faults_inherit(bool on);

/* No call fails from now; faults_hit and faults_calls keep what they said. */
void faults_disarm(void);

/* Whether the armed call failed, which function it was (NULL when none), and the errno
 * it failed with (0 when none). */
bool faults_hit(void);
const char *faults_hit_name(void);
int faults_hit_errno(void);
/* The process the armed call failed in (with faults_inherit, one of the tree), or 0. */
pid_t faults_hit_pid(void);

/* The wrapped calls counted since faults_arm. */
unsigned faults_calls(void);

/* Whether rc is the status of an operation that the fault made fail: SHMRPC_ESYS of the
 * errno it failed with (an allocation's also SHMRPC_ENOMEM), with a message
 * (shmrpc_errmsg). Says on stderr why not. */
bool faults_status(int rc);

/* Says on stderr why a check failed (a line); returns 1, a check's failure. */
int faults_say(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* The files in /dev/shm whose name holds part. */
unsigned faults_shm_files(const char *part);

/* One operation tried with each of its calls failing in turn (faults_sweep). */
typedef struct faults_case {
    const char *name;  /* for the messages */
    const char *which; /* the functions failed, as faults_arm takes them; NULL: all */
    /* The three steps, each in the child of one N, with arg. setup (may be NULL) makes
     * what the operation needs, unarmed: 0, or the child fails. run is the operation, with
     * the Nth call failing: its status. check, unarmed again, says whether the promise of
     * a failure held for run's status rc (a documented status, the objects still usable
     * or closable, the operation succeeding now) and closes and removes everything that
     * setup and run made: 0 when it held, else it says why on stderr. */
    int (*setup)(void *arg);
    int (*run)(void *arg);
    int (*check)(void *arg, int rc);
    void *arg;
    /* A file in /dev/shm (or under dir, when set) whose name holds this is the case's
     * (for the count of what is left behind); NULL: none is looked at. */
    const char *token;
    const char *dir;
    bool inherit; /* run's children count and fail too (faults_inherit) */
} faults_case;

/* Runs c with the 1st, 2nd, ... wrapped call of run failing, each N in a forked child,
 * until a run hits no fault (at most max runs). Each child must end by exit (so that
 * LeakSanitizer looks at it) with the promise held, and with the descriptors, the files
 * and the mappings of /dev/shm files and memfds it began with, no more. Returns the number of
 * faults that fired (at least 1 when run makes a wrapped call), or -1 after saying on stderr what
 * failed and at which N. */
int faults_sweep(const faults_case *c, unsigned max);

#endif
