/* SPDX-License-Identifier: MIT */
/* module= services: the supervisor's side (finding where a module serves, the manager's
 * command line) and the manager itself, which is shmrpc-service run again as
 * `shmrpc-service --module-host ...`: it loads the module, runs its init once, listens
 * and forks the workers. */
#ifndef SHMRPC_SUPERVISOR_MODULE_HOST_H
#define SHMRPC_SUPERVISOR_MODULE_HOST_H

#include <limits.h>
#include <stddef.h>

#include "config.h"
#include "sup_service.h"

/* The first argument that makes shmrpc-service a module's manager. */
#define SUP_MODULE_HOST_ARG "--module-host"

/* Room for a reason of sup_module_resolve: it names the module's path, and dlerror()'s
 * text may name it again and a library it needs, each shorter than PATH_MAX (the
 * configuration checked the module with stat()). No reason is cut to fit. */
#define SUP_MODULE_ERR_CAP (3 * PATH_MAX + 512)

/* Supervisor, at start: loads cfg's module to check it and, when the service.ini names no
 * shm_name or tcp_port, sets cfg->shm_name to the .svc's `name` and cfg->tcp_port to its
 * `port` (0: none), then unloads it. 0, or nonzero with the reason in err. */
int sup_module_resolve(cfg_file *c, cfg_service *cfg, char *err, size_t cap);

/* Supervisor: the manager's command line of a module service (its scaler is
 * sup_scaler.c's, made by sup_service_init). 0, or SHMRPC_ENOMEM. */
int sup_module_init(sup_service *s);
void sup_module_destroy(sup_service *s);

/* The TCP address its manager serves besides shm://, or NULL: none. */
const char *sup_module_tcp(const sup_service *s);

/* The worker count a manager starts with, written into its command line. */
void sup_module_set_start_workers(sup_service *s, int workers);

/* In the child, after fork: replaces it with the manager (only async-signal-safe calls).
 * Returns only when exec failed. */
void sup_module_exec(const sup_service *s);

/* The manager: shmrpc-service --module-host NAME MODULE WORKERS SHM_ADDRESS TCP_ADDRESS|-
 * SECRET_FILE|- [ARG...], the ARGs being module_args. Its exit status. */
int sup_module_host_main(int argc, char **argv);

#endif
