/* SPDX-License-Identifier: MIT */
/* The umbrella header: everything a shmrpc program uses. */
#ifndef SHMRPC_H
#define SHMRPC_H

#include <shmrpc/version.h>
#include <shmrpc/status.h>
#include <shmrpc/buf.h>
#include <shmrpc/arena.h>
#include <shmrpc/codec.h>
#include <shmrpc/any.h>
#include <shmrpc/service.h>
#include <shmrpc/client.h>
#include <shmrpc/server.h>
#include <shmrpc/metadata.h>
#include <shmrpc/intercept.h>
#include <shmrpc/wait.h>
#include <shmrpc/tcp.h>
#include <shmrpc/stats.h>
#include <shmrpc/lock.h>
#include <shmrpc/queue.h>
#include <shmrpc/map.h>
#include <shmrpc/module.h>
#include <shmrpc/dynamic.h>
#include <shmrpc/admin.h>

#endif
