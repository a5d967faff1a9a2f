/* shmrpcctl call: any method of a running service called from the shell, with a codec
 * driven by the method's canonical signature (docs/svc-language.md), not generated code. */
#ifndef SHMRPC_CTL_CALL_H
#define SHMRPC_CTL_CALL_H

#include <stddef.h>

#include <shmrpc/arena.h>
#include <shmrpc/buf.h>
#include <shmrpc/service.h>

typedef struct ctl_type ctl_type;

typedef struct ctl_param {
    const char *name;
    const ctl_type *type;
} ctl_param;

/* A method's signature as a tree of types; everything lives in the arena it was parsed into. */
typedef struct ctl_sig {
    const char *method;
    size_t n_params;
    const ctl_param *params;
    const ctl_type *result;
    shmrpc_encoding encoding;
} ctl_sig;

/* Parses a canonical signature such as "add(i64 a,i64 b)->i64 @msgpack". 0, or -1 with
 * the reason in err. */
int ctl_sig_parse(shmrpc_arena *a, const char *text, ctl_sig *out, char *err, size_t cap);

/* The arguments as JSON (an array in parameter order, or an object by parameter name) to
 * the body of a request in the method's encoding, appended to req. 0, or -1 with a
 * message that names the argument in err ("argument 'a': expected an integer (i64), got
 * \"x\""). */
int ctl_encode_args(const ctl_sig *s, const char *json, size_t n, shmrpc_buf *req, char *err,
                    size_t cap);

/* A response's body as compact JSON (no newline), appended to out. 0, or -1 with err. */
int ctl_decode_result(const ctl_sig *s, const void *body, size_t n, shmrpc_buf *out, char *err,
                      size_t cap);

/* The subcommand: shmrpcctl call [--timeout MS] [--secret-file PATH] ADDRESS METHOD [ARGS].
 * Its exit status: 0 done, 1 the call failed, 2 bad usage or input. */
/* A deep copy of a server's table into a (from shmrpc_client_server_info), so that a
 * client built from it has the server's method ids; NULL when a runs out. */
const shmrpc_service_info *ctl_info_copy(shmrpc_arena *a, const shmrpc_service_info *in);

int ctl_call_main(int argc, char **argv);

#endif
