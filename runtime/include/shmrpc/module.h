/* SPDX-License-Identifier: MIT */
/* A service module: a shared library that the supervisor (shmrpc-service) loads for a
 * `module = PATH` service of a service.ini (docs/service-ini.md, "module= services").
 *
 * A module is the server side of one .svc (shmrpc_generate(... SERVER)), its handlers,
 * and one line that exports them:
 *
 *     SHMRPC_MODULE(echo_service, echo_example_handlers, NULL, NULL);
 *
 * The supervisor starts a manager process per service that loads the module, runs init
 * ONCE, and then forks the workers, so what init loads is shared copy-on-write by every
 * worker. init's *user is handed to the handlers (shmrpc_ctx_user()); fini runs once in
 * the manager after the workers have stopped.
 *
 * Build it as add_library(x MODULE ...) that does NOT link the runtime: its shmrpc_*
 * symbols resolve from shmrpc-service, which carries the whole runtime and exports it.
 * A module that links its own copy would run two runtimes with two sets of state in one
 * process. It may link shared libraries (msgpack-c, its own). */
#ifndef SHMRPC_MODULE_H
#define SHMRPC_MODULE_H

#include <stdint.h>

#include <shmrpc/decls.h>
#include <shmrpc/service.h>

SHMRPC_BEGIN_DECLS

#define SHMRPC_MODULE_MAGIC 0x4d435253u /* "SRCM" */
#define SHMRPC_MODULE_VERSION 1u

/* The symbol the supervisor looks up. */
#define SHMRPC_MODULE_SYMBOL "shmrpc_module_v1"

/* Runs once in the manager before the workers fork (and before the manager of the
 * service's TCP address, if any, forks from it: both share what it loads). argv[0] is the
 * service's [NAME] in the service.ini, argv[1..argc-1] the words of its module_args key
 * (none: argc is 1), and argv[argc] is NULL, as for main. Sets *user (NULL is fine) and
 * returns 0, or a nonzero value that stops the service from starting (the manager exits
 * with status 1; it is restarted with backoff like a crash). */
typedef int (*shmrpc_module_init_fn)(void **user, int argc, char **argv);
/* Runs once in the manager after the workers (of every address) stopped, with init's
 * *user. */
typedef void (*shmrpc_module_fini_fn)(void *user);

typedef struct shmrpc_module {
    uint32_t magic;                /* SHMRPC_MODULE_MAGIC */
    uint32_t version;              /* SHMRPC_MODULE_VERSION */
    const shmrpc_service *service; /* the generated descriptor: NAME_service */
    const void *handlers;          /* the filled handler table: a NAME_handlers */
    shmrpc_module_init_fn init;    /* NULL: none, user is NULL */
    shmrpc_module_fini_fn fini;    /* NULL: none */
} shmrpc_module;

/* What SHMRPC_MODULE defines, in the module. */
extern const shmrpc_module shmrpc_module_v1;

/* Exports a module: the descriptor, the handler table (objects, not pointers), init and
 * fini (or NULL). One per shared library. */
#define SHMRPC_MODULE(service_, handlers_, init_, fini_)                                           \
    __attribute__((visibility("default"))) const shmrpc_module shmrpc_module_v1 = {                \
        SHMRPC_MODULE_MAGIC, SHMRPC_MODULE_VERSION, &(service_), &(handlers_), (init_), (fini_)}

SHMRPC_END_DECLS
#endif
