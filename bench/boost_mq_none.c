/* SPDX-License-Identifier: MIT */
/* The boost-mq baseline where the benchmark was built without a C++ compiler or Debian's
 * libboost-dev (bench/CMakeLists.txt): its rows say n/a. */
#include "boost_mq.h"

int boost_mq_create(const char *name, size_t depth, size_t size)
{
    (void)name, (void)depth, (void)size;
    return 1;
}

boost_mq *boost_mq_open(const char *name)
{
    (void)name;
    return NULL;
}

int boost_mq_send(boost_mq *q, const void *data, size_t len, int ms)
{
    (void)q, (void)data, (void)len, (void)ms;
    return -1;
}

int boost_mq_receive(boost_mq *q, void *buf, size_t cap, size_t *len, int ms)
{
    (void)q, (void)buf, (void)cap, (void)len, (void)ms;
    return -1;
}

void boost_mq_close(boost_mq *q)
{
    (void)q;
}

void boost_mq_remove(const char *name)
{
    (void)name;
}
