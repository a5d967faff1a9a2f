/* SPDX-License-Identifier: MIT */
/* The shm:// transport's entry in the table of transports (api/transport.c): the top of
 * this folder, the one file that names both sides, so that neither side nor shm.c below
 * them calls the other. */
#include "transport/shm/shm_int.h"

const shmrpc__transport shmrpc__shm_transport = {
    .scheme = "shm",
    .connect = shmrpc__shm_connect,
    .listen = shmrpc__shm_listen,
};
