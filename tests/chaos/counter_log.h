/* SPDX-License-Identifier: MIT */
/* What counter_module.c appends and chaos_test.c reads: one fixed-size record per call
 * that ran, written by one write(2) to a file opened O_APPEND, so records from workers
 * writing at once never interleave and a record never straddles a page. */
#ifndef SHMRPC_TEST_COUNTER_LOG_H
#define SHMRPC_TEST_COUNTER_LOG_H

#include <stdint.h>

#define COUNTER_SEQ_BITS 40 /* an id is (client << COUNTER_SEQ_BITS) | sequence */
#define COUNTER_ID_BITS 48  /* up to 256 clients */

/* A record: the id in the low COUNTER_ID_BITS, a check of it in the bits above, so that
 * a record that is not whole, or bytes that are no record, do not pass. */
typedef uint64_t counter_record;

_Static_assert(4096 % sizeof(counter_record) == 0, "a record never straddles a page");

static inline counter_record counter_record_of(uint64_t id)
{
    uint64_t check = (id * 0x9e3779b97f4a7c15u) >> COUNTER_ID_BITS;
    return check << COUNTER_ID_BITS | id;
}

/* The id of r, or UINT64_MAX when its check fails. */
static inline uint64_t counter_record_id(counter_record r)
{
    uint64_t id = r & (((uint64_t)1 << COUNTER_ID_BITS) - 1);
    return counter_record_of(id) == r ? id : UINT64_MAX;
}

#endif
