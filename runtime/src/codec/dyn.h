/* SPDX-License-Identifier: MIT */
/* What the parts of the dynamic codec share (dynamic.c: the signature parser;
 * dynamic_types.c: a method table's types; dynamic_json.c: the conversions;
 * api/dyn_client.c: the handle that connects; rpc/compat.c: the comparison of two tables):
 * the handle, a table's types by name, the names and ranges of the scalar kinds, and the
 * handle's message. */
#ifndef SHMRPC_SRC_DYN_H
#define SHMRPC_SRC_DYN_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <shmrpc/dynamic.h>

#include "codec/codec.h"

/* A method table's types (shmrpc_service_info.types) parsed, by name: dynamic_types.c
 * fills it, the signature parser looks names up in it. */
typedef struct shmrpc__types {
    uint32_t n;               /* types */
    shmrpc_dyn_type **nodes;  /* n of them, in the table's order */
    /* The same n sorted by name (strcmp), found by binary search: a hash a peer picks the
     * names for could be made to collide, and a search in order no choice of names slows. */
    shmrpc_dyn_type **byname;
} shmrpc__types;

/* The position in t->byname of the type named name (NUL-terminated); t->n when none. */
uint32_t shmrpc__types_index(const shmrpc__types *t, const char *name);

/* The type of t named name (NUL-terminated), or NULL; t may be NULL. */
const shmrpc_dyn_type *shmrpc__types_find(const shmrpc__types *t, const char *name);

/* How many types a table may hold: what the wire carries (docs/wire.md). */
#define SHMRPC__MAX_TYPES 65535u
/* The longest text shmrpc_dyn_sig_text writes for one signature (1 MiB, a handshake's). */
#define SHMRPC__DYN_SIG_TEXT_MAX (1u << 20)

/* Parses the n descriptions of a method table's types into a ("struct Point{f64 x;...}",
 * what they hold by name). Each struct or enum is described once; every name a description
 * uses is described; no struct holds itself but through a list, a map or an optional (a
 * value of it would never end). SHMRPC_EINVAL with the first failure in err ("types,
 * 'Point': described twice"), SHMRPC_ENOMEM. Bounded by the texts: what it allocates is a
 * small multiple of their bytes, and it recurses no deeper than a description nests. */
int shmrpc__types_parse(shmrpc_arena *a, const char *const *texts, uint32_t n,
                        const shmrpc__types **out, char *err, size_t cap);

/* Whether info's types parse (shmrpc__types_parse, into memory freed before it returns):
 * what a transport asks of a peer's table when it arrives. SHMRPC_EINVAL with the reason
 * in err, SHMRPC_ENOMEM. */
int shmrpc__types_check(const shmrpc_service_info *info, shmrpc_buf *err);

/* Parses one description of a table (texts[i] of shmrpc__types_parse) into the node the
 * table holds for its name, which must match its kind (dynamic.c). 0, or -1 with err. */
int shmrpc__dyn_parse_description(shmrpc_arena *a, const char *text, const shmrpc__types *types,
                                  shmrpc_dyn_type *node, char *err, size_t cap, bool *nomem);

/* Parses a signature into a, its structs and enums named alone looked up in types (which may
 * be NULL: then each must be spelled out where first met, as the tables of revision 5 or less do).
 * SHMRPC_EINVAL with "signature, at byte N: WHY" in err, SHMRPC_ENOMEM. */
int shmrpc__dyn_parse(shmrpc_arena *a, const char *text, const shmrpc__types *types,
                      const shmrpc_dyn_sig **out, char *err, size_t cap);

/* Appends s's canonical text (each struct and enum spelled out where first met: what the
 * fingerprint hashes, and what a peer of revision 5 or less reads) to out, at most limit
 * bytes of it; out->err on failure: SHMRPC_ETOOBIG past limit, SHMRPC_EINVAL for types
 * nested SHMRPC_MAX_DEPTH deep, SHMRPC_ENOMEM. Its cost is bounded by limit and the depth. */
void shmrpc__dyn_sig_text(const shmrpc_dyn_sig *s, shmrpc_buf *out, size_t limit);

/* in as a table of revision 5 or less into out (which may be in): each signature with its types
 * spelled out, no types, in a; for a peer that reads no types. SHMRPC_EPROTO when in's
 * own table does not parse or nests too deep, SHMRPC_ETOOBIG when a signature grows past
 * what the wire carries (65535 bytes) or all of them past max_total, SHMRPC_ENOMEM; the
 * message in err. */
int shmrpc__info_spelled(shmrpc_arena *a, const shmrpc_service_info *in, size_t max_total,
                         shmrpc_service_info *out, shmrpc_buf *err);

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
    const shmrpc__types *types;  /* info's types, parsed on first use; NULL before */
    const char *types_err;       /* why they did not parse, so that it is tried once */
};

/* "i64" for SHMRPC_DYN_I64, and so on for every kind up to SHMRPC_DYN_BYTES; NULL after. */
extern const char *const shmrpc__dyn_scalar_names[SHMRPC_DYN_BYTES + 1];

/* A type as a signature spells it, structs and enums by name ("list<struct Point>"), cut
 * at cap bytes (dynamic_values.c). */
void shmrpc__dyn_type_text(const shmrpc_dyn_type *t, char *out, size_t cap);

/* The range of an integer kind. */
int64_t shmrpc__dyn_int_min(shmrpc_dyn_kind k);
uint64_t shmrpc__dyn_int_max(shmrpc_dyn_kind k);

/* The first failure of a walk over a signature or a value, as "WHERE: WHY" into err (cap
 * bytes); later ones are dropped, as the first names the place. Returns -1. */
int shmrpc__dyn_note(char *err, size_t cap, bool *failed, const char *where, const char *fmt,
                     va_list ap) SHMRPC__FMT(5, 0);

#endif
