/* SPDX-License-Identifier: MIT */
/* shmrpcctl's commands that talk to the supervisor's control service (control.svc):
 * status, start, stop, restart, logs and scale. Each takes argv[0] as its own name and
 * returns the exit status: 0 done, 1 failed, 2 bad usage. */
#ifndef SHMRPC_SUPERVISOR_CTL_CONTROL_H
#define SHMRPC_SUPERVISOR_CTL_CONTROL_H

/* The supervisor named before the command (-a ADDRESS or --ini FILE, NULL: none); the
 * command's own -a or --ini win. */
void ctl_control_target(const char *addr, const char *ini);

int ctl_status(int argc, char **argv);
int ctl_start(int argc, char **argv);
int ctl_stop(int argc, char **argv);
int ctl_restart(int argc, char **argv);
int ctl_logs(int argc, char **argv);
int ctl_scale(int argc, char **argv);

#endif
