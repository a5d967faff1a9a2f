/* SPDX-License-Identifier: MIT */
/* The dynamic codec: a method's canonical signature read at run time, and JSON converted
 * to the method's wire encoding and back, for programs that call a service without its
 * generated code (shmrpcctl call, the management page's gateway, other languages).
 * docs/dynamic.md has the signature format and the JSON form of every type. */
#ifndef SHMRPC_DYNAMIC_H
#define SHMRPC_DYNAMIC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <shmrpc/arena.h>
#include <shmrpc/buf.h>
#include <shmrpc/client.h>
#include <shmrpc/decls.h>
#include <shmrpc/service.h>

SHMRPC_BEGIN_DECLS

/* --- a signature as a tree of types ---------------------------------------------------
 * Parsed from the text the generator writes into the method table; read-only, and alive
 * as long as the handle that parsed it (see shmrpc_dyn_sig_parse). */

typedef enum shmrpc_dyn_kind {
    SHMRPC_DYN_VOID,
    SHMRPC_DYN_BOOL,
    SHMRPC_DYN_I8,
    SHMRPC_DYN_I16,
    SHMRPC_DYN_I32,
    SHMRPC_DYN_I64,
    SHMRPC_DYN_U8,
    SHMRPC_DYN_U16,
    SHMRPC_DYN_U32,
    SHMRPC_DYN_U64,
    SHMRPC_DYN_F32,
    SHMRPC_DYN_F64,
    SHMRPC_DYN_STRING,
    SHMRPC_DYN_BYTES,
    SHMRPC_DYN_LIST,
    SHMRPC_DYN_MAP,
    SHMRPC_DYN_OPT,
    SHMRPC_DYN_STRUCT,
    SHMRPC_DYN_ENUM,
    SHMRPC_DYN_ANY, /* a dynamic value (shmrpc/any.h); never optional, never a map's key */
} shmrpc_dyn_kind;

/* Whether k is one of the eight integer kinds, SHMRPC_DYN_I8 to SHMRPC_DYN_U64 (inline: the
 * codecs ask it once a value). */
static inline bool shmrpc_dyn_is_int(shmrpc_dyn_kind k)
{
    return k >= SHMRPC_DYN_I8 && k <= SHMRPC_DYN_U64;
}

/* Whether k is one of the four signed integer kinds, SHMRPC_DYN_I8 to SHMRPC_DYN_I64. */
static inline bool shmrpc_dyn_is_signed(shmrpc_dyn_kind k)
{
    return k >= SHMRPC_DYN_I8 && k <= SHMRPC_DYN_I64;
}

typedef struct shmrpc_dyn_type shmrpc_dyn_type;

/* A parameter of a method or a field of a struct. */
typedef struct shmrpc_dyn_field {
    const char *name;
    const shmrpc_dyn_type *type;
} shmrpc_dyn_field;

typedef struct shmrpc_dyn_enumval {
    const char *name;
    int64_t value;
} shmrpc_dyn_enumval;

/* One node of the tree. A struct that holds itself (through a list or an optional) is
 * one node reached again, so walks of a type must be bounded by the value, not the type. */
struct shmrpc_dyn_type {
    shmrpc_dyn_kind kind;
    const shmrpc_dyn_type *elem; /* list: element; map: value; optional: what it holds */
    const shmrpc_dyn_type *key;  /* map: a string, an integer or an enum */
    const char *name;            /* struct, enum */
    size_t n;                    /* struct: fields; enum: values (in declaration order) */
    const shmrpc_dyn_field *fields;
    const shmrpc_dyn_enumval *values;
};

typedef struct shmrpc_dyn_sig {
    const char *method;
    size_t n_params;
    const shmrpc_dyn_field *params;
    const shmrpc_dyn_type *result; /* SHMRPC_DYN_VOID for a method that returns nothing */
    shmrpc_encoding encoding;
    /* "pickle" or "marshal" for a method of Python's (@pickle, @marshal: bytes both ways,
     * encoding SHMRPC_ENC_RAW), which the codec refuses to call; NULL otherwise. */
    const char *python_only;
    /* The method is @idempotent (its signature ends " @idempotent"): a client may retry a
     * call of it that failed as "may have run" (docs/retries.md). */
    bool idempotent;
    /* The result is stream<result>: the server answers with items, each a value of result
     * (docs/streams.md). */
    bool server_stream;
    /* The one parameter is stream<params[0].type>: the client sends items, each a value of
     * params[0].type. */
    bool client_stream;
} shmrpc_dyn_sig;

/* --- the handle ---------------------------------------------------------------------
 * Holds what was parsed and the connection (if any). Used by one thread at a time. A
 * failure says why in shmrpc_errmsg(), as every shmrpc call does (status.h). */

typedef struct shmrpc_dyn shmrpc_dyn;

/* A handle that will connect with opts (NULL for the defaults; opts is copied, and a
 * secret it points to must outlive the handle). Fails as shmrpc_client_new does. */
int shmrpc_dyn_new(shmrpc_dyn **out, const shmrpc_client_opts *opts);
void shmrpc_dyn_free(shmrpc_dyn *d);

/* Connects to a service whose method table the caller does not know: a client with an
 * empty table connects (any server accepts it) and reads the server's table; a second
 * client built from a copy of it connects, so that its method ids are the server's. A
 * connected handle drops its connection (and the signatures it parsed) first. Fails as
 * shmrpc_client_connect does (SHMRPC_EINVAL: a malformed address; SHMRPC_EUNAVAIL: nobody
 * serves there), with the failing client's message. */
int shmrpc_dyn_connect(shmrpc_dyn *d, const char *addr);

/* The server's table as connected (NULL before), and the client that calls it: a call is
 * shmrpc_client_request(), shmrpc_dyn_encode_args() into it, shmrpc_client_call() with
 * the method's id, shmrpc_dyn_decode_result(). Both live until the next connect or free. */
const shmrpc_service_info *shmrpc_dyn_info(const shmrpc_dyn *d);
shmrpc_client *shmrpc_dyn_client(shmrpc_dyn *d);

/* The connected service's method called name and its parsed signature (parsed once per
 * connection). SHMRPC_ENOENT when there is no such method ("Echo has no method 'x' (it
 * has: add, echo)"), SHMRPC_EPROTO when its signature does not parse (*m is then set),
 * SHMRPC_ECLOSED when not connected. */
int shmrpc_dyn_method(shmrpc_dyn *d, const char *name, const shmrpc_method_info **m,
                      const shmrpc_dyn_sig **sig);

/* Parses a canonical signature such as "add(i64 a,i64 b)->i64 @msgpack" into d's memory,
 * where it lives until the next connect or free. SHMRPC_EINVAL with "signature, at byte
 * N: WHY"; SHMRPC_ENOMEM. */
int shmrpc_dyn_sig_parse(shmrpc_dyn *d, const char *text, const shmrpc_dyn_sig **out);

/* Appends the canonical text of s to out: each struct and enum spelled out the first time
 * it is named ("centroid(list<struct Point{f64 x;f64 y;string? label;}> points)->struct
 * Point @msgpack"), the text the method's fingerprint hashes, whereas a method table's
 * signature names its structs and enums alone (docs/svc-language.md). 0, or out->err:
 * SHMRPC_ETOOBIG for a text above 1 MiB, SHMRPC_EINVAL for types nested SHMRPC_MAX_DEPTH
 * deep, SHMRPC_ENOMEM; what a hostile table makes it cost is bounded so. */
int shmrpc_dyn_sig_text(const shmrpc_dyn_sig *s, shmrpc_buf *out);

/* The arguments as n bytes of JSON (an array in parameter order, or an object by
 * parameter name; an optional parameter may be left out) to a request body in the
 * method's encoding, appended to req. SHMRPC_EINVAL with a message that names the place
 * ("argument 'points'[1].x: expected a number (f64), got \"a\""). This and the two below
 * refuse (SHMRPC_EINVAL) a @pickle or @marshal method; the two below a method whose result
 * streams too. A stream's open (shmrpc_client_open) sends a call's arguments: for a method
 * whose parameter streams, none ([] or {}), its items being sent one by one
 * (shmrpc_dyn_encode_item). */
int shmrpc_dyn_encode_args(const shmrpc_dyn_sig *s, const char *json, size_t n, shmrpc_buf *req);

/* A response body to compact JSON (no newline), appended to out. SHMRPC_EINVAL with a
 * message naming the place ("result.x: ...") when the body does not match the signature.
 * A method whose parameter streams answers once, with such a body (shmrpc_stream_answer). */
int shmrpc_dyn_decode_result(const shmrpc_dyn_sig *s, const void *body, size_t n, shmrpc_buf *out);

/* An item of a method whose result streams (shmrpc_stream_recv's) to compact JSON, as
 * decode_result prints a result ("item.x: ..." when it does not match). SHMRPC_EINVAL for a
 * method that answers once. */
int shmrpc_dyn_decode_item(const shmrpc_dyn_sig *s, const void *body, size_t n, shmrpc_buf *out);

/* n bytes of JSON, one value of a streamed parameter's item type, to the item the client
 * sends (shmrpc_stream_send), appended to out: as encode_result writes a value, "item.x:
 * ..." when it does not fit. SHMRPC_EINVAL for a method whose parameter does not stream. */
int shmrpc_dyn_encode_item(const shmrpc_dyn_sig *s, const char *json, size_t n, shmrpc_buf *out);

/* The reverse: n bytes of JSON, one value of the result type, to the body a server would
 * answer with, appended to out; a typed queue's message is this (docs/queue.md). The JSON
 * is as decode_result prints it. SHMRPC_EINVAL with a message naming the place ("value.x:
 * ..."). */
int shmrpc_dyn_encode_result(const shmrpc_dyn_sig *s, const char *json, size_t n, shmrpc_buf *out);

/* A deep copy of a service's table into a (for instance of
 * shmrpc_client_server_info(), which the next connect or call may change), so that a
 * client can be built from it. NULL when a runs out of memory. */
const shmrpc_service_info *shmrpc_dyn_info_copy(shmrpc_arena *a, const shmrpc_service_info *in);

SHMRPC_END_DECLS
#endif
