/* SPDX-License-Identifier: MIT */
/* boost::interprocess::message_queue behind a C interface, for shmrpc-bench-queue's
 * boost-mq baseline (bench/boost_mq.cpp; Debian's libboost-dev, header-only). */
#ifndef SHMRPC_BENCH_BOOST_MQ_H
#define SHMRPC_BENCH_BOOST_MQ_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct boost_mq boost_mq;

/* Removes any queue of that name and creates one of depth messages of up to size bytes:
 * 0; 1 when the benchmark was built without boost (boost_mq_none.c); or -1 with a message
 * on stderr. */
int boost_mq_create(const char *name, size_t depth, size_t size);
/* Opens an existing queue: the handle, or NULL with a message on stderr. */
boost_mq *boost_mq_open(const char *name);
/* 0, 1 when the queue stayed full (send) or empty (receive) for ms, -1 on an error. */
int boost_mq_send(boost_mq *q, const void *data, size_t len, int ms);
int boost_mq_receive(boost_mq *q, void *buf, size_t cap, size_t *len, int ms);
void boost_mq_close(boost_mq *q);
void boost_mq_remove(const char *name);

#ifdef __cplusplus
}
#endif
#endif
