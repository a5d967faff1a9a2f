/* SPDX-License-Identifier: MIT */
/* What the parts of the dynamic codec share (dynamic.c: the signature parser;
 * dynamic_json.c: the conversions; api/dyn_client.c: the handle that connects): the
 * handle, the names and ranges of the scalar kinds, and the handle's message. */
#ifndef SHMRPC_SRC_DYN_H
#define SHMRPC_SRC_DYN_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <shmrpc/dynamic.h>

#include "codec/codec.h"

/* The handle (api/dyn_client.c makes it and connects it; the signature parser keeps what it
 * parses in its arena). */
struct shmrpc_dyn {
    shmrpc_client_opts opts;
    shmrpc_client *probe; /* an empty table, to learn the server's; NULL once connected */
    shmrpc_client *c;     /* built from info */
    shmrpc_arena *a;      /* info, and the signatures parsed since the last connect */
    const shmrpc_service_info *info;
    const shmrpc_dyn_sig **sigs; /* parallel to info->methods, parsed on first use */
    const char **sig_errs;       /* why one did not parse, so that it is tried once */
};

/* "i64" for SHMRPC_DYN_I64, and so on for every kind up to SHMRPC_DYN_BYTES; NULL after. */
extern const char *const shmrpc__dyn_scalar_names[SHMRPC_DYN_BYTES + 1];

/* The range of an integer kind. */
int64_t shmrpc__dyn_int_min(shmrpc_dyn_kind k);
uint64_t shmrpc__dyn_int_max(shmrpc_dyn_kind k);

/* The first failure of a walk over a signature or a value, as "WHERE: WHY" into err (cap
 * bytes); later ones are dropped, as the first names the place. Returns -1. */
int shmrpc__dyn_note(char *err, size_t cap, bool *failed, const char *where, const char *fmt,
                     va_list ap) SHMRPC__FMT(5, 0);

#endif
