/* SPDX-License-Identifier: MIT */
/* The codecs' internal interfaces (shmrpc__*): texts for the integer readers, and the
 * one conversion of a JSON value into an any's msgpack. */
#ifndef SHMRPC_SRC_CODEC_H
#define SHMRPC_SRC_CODEC_H

#include "core/core.h"

/* Static "integer out of range for i8"-style texts for the integer readers (mp_read.c). */
const char *shmrpc__int_range_why(int64_t min, int64_t max);
const char *shmrpc__uint_range_why(uint64_t max);

/* A JSON value (jansson's, parsed with the depth bounded) as an any's msgpack through pk,
 * plain JSON as a @json wire holds it: the generated @json decoders' reader of an any
 * (json.c), the dynamic codec's own conversion (dynamic_json.c). 0, or -1 with the reason
 * in shmrpc_errmsg(). */
struct json_t;
struct msgpack_packer;
int shmrpc__json_any_to_mp(const struct json_t *v, struct msgpack_packer *pk);

#endif
