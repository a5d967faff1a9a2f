/* SPDX-License-Identifier: MIT */
/* A module= service's workers (and an exec= service's, when its program follows a count),
 * watched once a second by the supervisor: their CPU use
 * scales their count between min_proc_num and max_proc_num (speedysvc's rule, with the
 * service.ini's thresholds), a worker over max_proc_mem_bytes is SIGKILLed, and an
 * operator may set a fixed count (the control service's scale). */
#ifndef SHMRPC_SUPERVISOR_SCALER_H
#define SHMRPC_SUPERVISOR_SCALER_H

#include <stddef.h>
#include <stdint.h>

#include "sup_service.h"

/* How often the workers are looked at. */
#define SUP_SCALER_EVERY_MS 1000

/* s->scaler for a module= or exec= service; 0 or SHMRPC_ENOMEM. An exec= service is scaled
 * only while its process catches SIGRTMIN (a server built on libshmrpc). */
int sup_scaler_new(sup_service *s);
void sup_scaler_free(sup_service *s);

/* A manager is about to start: its history afresh; returns the count it starts with
 * (min_proc_num, or the operator's fixed count). */
int sup_scaler_starting(sup_service *s, int64_t now);

/* An operator started or restarted the service: automatic scaling again. */
void sup_scaler_operator_reset(sup_service *s);

/* A sample when one is due; acts on it. */
void sup_scaler_tick(sup_service *s, int64_t now);
/* When the next sample is due; INT64_MAX: none (no manager runs). */
int64_t sup_scaler_next_deadline(const sup_service *s);

/* The control service's scale: a fixed count, 1 to SHMRPC_MAX_WORKERS, until an operator
 * starts or restarts the service. 0, or a status with the reason in msg. */
int sup_scaler_operator_set(sup_service *s, int workers, char *msg, size_t cap);

/* The count the manager was last told (or started with). */
int sup_scaler_workers(const sup_service *s);

#endif
