/* SPDX-License-Identifier: MIT */
/* The boost-mq baseline of shmrpc-bench-queue: boost::interprocess::message_queue (a
 * process-shared mutex and two condition variables over a ring of fixed-size slots in a
 * shared-memory segment), wrapped for the C benchmark. */
#include "boost_mq.h"

#include <boost/date_time/posix_time/posix_time_types.hpp>
#include <boost/interprocess/ipc/message_queue.hpp>
#include <cstdio>
#include <new>

namespace bip = boost::interprocess;

struct boost_mq {
    bip::message_queue mq;
    explicit boost_mq(const char *name) : mq(bip::open_only, name) {}
};

static boost::posix_time::ptime in_ms(int ms)
{
    return boost::posix_time::microsec_clock::universal_time() +
           boost::posix_time::milliseconds(ms);
}

int boost_mq_create(const char *name, size_t depth, size_t size)
{
    try {
        bip::message_queue::remove(name);
        bip::message_queue mq(bip::create_only, name, depth, size);
        return 0;
    } catch (const std::exception &e) {
        std::fprintf(stderr, "boost message_queue %s: %s\n", name, e.what());
        return -1;
    }
}

boost_mq *boost_mq_open(const char *name)
{
    try {
        return new boost_mq(name);
    } catch (const std::exception &e) {
        std::fprintf(stderr, "boost message_queue %s: %s\n", name, e.what());
        return nullptr;
    }
}

int boost_mq_send(boost_mq *q, const void *data, size_t len, int ms)
{
    try {
        return q->mq.timed_send(data, len, 0, in_ms(ms)) ? 0 : 1;
    } catch (const std::exception &e) {
        std::fprintf(stderr, "boost message_queue send: %s\n", e.what());
        return -1;
    }
}

int boost_mq_receive(boost_mq *q, void *buf, size_t cap, size_t *len, int ms)
{
    try {
        bip::message_queue::size_type got = 0;
        unsigned prio = 0;
        if (!q->mq.timed_receive(buf, cap, got, prio, in_ms(ms))) return 1;
        *len = got;
        return 0;
    } catch (const std::exception &e) {
        std::fprintf(stderr, "boost message_queue receive: %s\n", e.what());
        return -1;
    }
}

void boost_mq_close(boost_mq *q)
{
    delete q;
}

void boost_mq_remove(const char *name)
{
    bip::message_queue::remove(name);
}
