/* SPDX-License-Identifier: MIT */
/* The supervisor's control service (control.svc): served over shm:// by a thread of its
 * own, whose handlers hand each request to the main loop and wait for its answer, so that
 * the services' state is touched by the main thread only. */
#ifndef SHMRPC_SUPERVISOR_CONTROL_H
#define SHMRPC_SUPERVISOR_CONTROL_H

#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "sup_series.h"
#include "sup_service.h"

typedef struct sup_control sup_control;

/* Listens at addr and starts the serving thread (call it with the signals the main loop
 * reads blocked, so that the thread keeps them blocked too). svcs (n of them, parallel to
 * c->services) must outlive it. 0, or a status with a message in err. */
int sup_control_start(sup_control **out, const char *addr, const cfg_file *c, sup_service *svcs,
                      size_t n, char *err, size_t cap);

/* Main thread: where status() takes the workers from (sup_series_workers, as status.json
 * does), from the next answer on; until then, and with NULL, every service has none.
 * series must outlive k, or be replaced first. */
void sup_control_set_series(sup_control *k, const sup_series *series);

/* What the main loop polls: readable when a request waits. */
int sup_control_fd(const sup_control *k);

/* Main thread: acts on the waiting request, if any, and answers it. */
void sup_control_handle(sup_control *k, int64_t now);

/* Stops serving, fails a request still waiting, joins the thread, removes the segment and
 * frees it all. NULL is fine. */
void sup_control_stop(sup_control *k);

/* The last lines of a file and, when it has fewer, of its predecessor path.1 before
 * them: at most max_lines lines and max_bytes bytes, oldest first, without their line
 * ends. *out holds the lines one after another, *count of them, each ended by '\0';
 * free(*out). 0, or SHMRPC_ENOMEM or SHMRPC_ESYS(errno) (ENOENT: no log yet). */
int sup_control_tail(const char *path, size_t max_lines, size_t max_bytes, char **out,
                     size_t *count);

#endif
