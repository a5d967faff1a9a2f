/* SPDX-License-Identifier: MIT */
/* What the parts of the shmrpc extension share, by the file that has it, lowest first: the
 * exceptions (errors.c), interceptors written in Python and a call's metadata as a dict
 * (intercept.c), the fork count (forks.c), the place of a bad value (place.c), the
 * conversions of Python values to the dynamic codec's JSON or msgpack (encode.c) and back
 * (decode.c), which the client (client.c), serve() (serve.c) and the queues and maps
 * (store.c) go through alike, and each part's init, which _shmrpc.c calls. A file calls
 * only what is declared before its own part here. */
#ifndef PYSHMRPC_H
#define PYSHMRPC_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <stdatomic.h>
#include <stdbool.h>

#include <msgpack.h>

#include <shmrpc/buf.h>
#include <shmrpc/codec.h>
#include <shmrpc/dynamic.h>
#include <shmrpc/intercept.h>
#include <shmrpc/lock.h>
#include <shmrpc/metadata.h>

/* The head of each of the module's types: its dotted name, the size of its objects, its
 * flags besides Py_TPFLAGS_DEFAULT (0 for none) and its doc; the type's own slots follow. */
/* clang-format off */
#define PYSHM_TYPE(name, object, flags, doc)                                                       \
    PyVarObject_HEAD_INIT(NULL, 0)                                                                 \
    .tp_name = name, .tp_basicsize = sizeof(object), .tp_flags = Py_TPFLAGS_DEFAULT | (flags),     \
    .tp_doc = doc
/* clang-format on */

/* --- errors.c ------------------------------------------------------------------------ */

extern PyObject *pyshm_Error, *pyshm_Timeout, *pyshm_Unavailable, *pyshm_Mismatch,
    *pyshm_HandlerError, *pyshm_PeerDied, *pyshm_Cancelled;

/* Raises the exception of a failed library call (cls, or rc's own class when NULL), with
 * .status, .status_name, .message (msg) and .may_have_run; sent: the request had left. */
PyObject *pyshm_raise_as(PyObject *cls, int rc, const char *what, const char *msg, bool sent);
PyObject *pyshm_raise_status(int rc, const char *what, const char *msg);

/* The status an exception (type, value) stands for, as a handler's or an interceptor's:
 * its .status when that is one a handler may answer with (EINVAL, ENOENT, EPERM, EBUSY,
 * EHANDLER; not a transport's, which the client would take for its own connection's),
 * SHMRPC_EINVAL for a ValueError (a bad argument, as C handlers report one), else rc. */
int pyshm_status_of(PyObject *type, PyObject *value, int rc);
/* The pending exception taken as a handler's or a hook's failure: its status
 * (pyshm_status_of, rc when it names none) returned, "TypeName: message" in msg, and the
 * exception's parts in *type, *value, *tb (new references, for the caller to show or keep). */
int pyshm_failure(PyObject **type, PyObject **value, PyObject **tb, int rc, char *msg, size_t cap);
/* Adds shmrpc.Error and its subclasses to the module. */
int pyshm_errors_init(PyObject *module);

/* --- intercept.c --------------------------------------------------------------------- */
/* A call's metadata m (NULL: none) as a new dict {str: str}, in m's order; NULL raised. */
PyObject *pyshm_metadata_dict(const shmrpc_metadata *m);
/* One interceptor written in Python: its hooks (new references; NULL for one it lacks)
 * and, for a client's, where the exception a hook raised waits to be raised again to the
 * caller (NULL for a server's, whose hooks' exceptions go to stderr). */
typedef struct pyshm_icpt {
    PyObject *before, *after;
    PyObject **pending;
} pyshm_icpt;
/* The library's interceptor that runs i's hooks, its arg i (which must outlive it). */
shmrpc_interceptor pyshm_icpt_hooks(const pyshm_icpt *i);
/* obj's before and after (methods or attributes) into i; -1 raised (TypeError) when it has
 * neither or one is not callable. */
int pyshm_icpt_from(PyObject *obj, pyshm_icpt *i);
void pyshm_icpt_clear(pyshm_icpt *i);
/* Readies the type of what the hooks are handed (their call); -1 raised. */
int pyshm_intercept_init(void);
/* --- forks.c ------------------------------------------------------------------------- */

/* Bumped in each child at fork (pyshm_forks_init registers it); read by pyshm_forks. */
extern _Atomic unsigned pyshm_fork_count;

/* How many forks this process is from the one that imported the module (each child
 * counts one more, at the fork): "am I still the process that opened it", without getpid(). */
static inline unsigned pyshm_forks(void)
{
    return atomic_load_explicit(&pyshm_fork_count, memory_order_relaxed);
}

void pyshm_forks_init(void);

/* --- place.c ------------------------------------------------------------------------- */

/* Nesting of a value, as the dynamic codec's own bound (docs/dynamic.md): deeper values,
 * and values that hold themselves, fail with the place rather than recursing on. */
#define PYSHM_MAX_DEPTH 128

/* The place inside a value, for messages: "argument 'points'[1].x", or "value.x" for a
 * top-level place marked bare. */
typedef struct place {
    const struct place *up;
    const char *field; /* a struct's field, or the top (up == NULL) */
    Py_ssize_t index;  /* a list's element, when field == NULL and key == NULL */
    PyObject *key;     /* a map's key */
    bool bare;         /* the top: its name alone, not "argument 'NAME'" */
} place;

/* v as a message shows it (new reference); NULL only when memory ran out. */
PyObject *pyshm_shown(PyObject *v);

/* Raises cls with "argument 'points'[1].x: WHY" (WHY printf-like, as PyUnicode_FromFormat).
 * Returns -1. */
int pyshm_fail_at(PyObject *cls, const place *p, const char *fmt, ...);

/* Raises cls with "PLACE: V WHY", v as pyshm_shown shows it. Returns -1. */
int pyshm_fail_shown(PyObject *cls, const place *p, PyObject *v, const char *why, ...);

/* t's kind as the .svc writes it ("i32", "struct"), for messages. */
const char *pyshm_kind_name(const shmrpc_dyn_type *t);

/* --- encode.c ------------------------------------------------------------------------ */

/* Appends v as t's JSON to b, checked against t; raises (TypeError, ValueError,
 * OverflowError naming the place) and returns -1 when it does not fit. */
int pyshm_encode(shmrpc_buf *b, const shmrpc_dyn_type *t, PyObject *v, const place *p, int depth);

/* v as a body of sig's result type into out (cleared first); json is scratch space. what
 * names the value in messages ("value", "key"). Raises and returns -1 on a bad value. */
int pyshm_encode_body(const shmrpc_dyn_sig *sig, PyObject *v, const char *what, shmrpc_buf *json,
                      shmrpc_buf *out);

/* v as t's msgpack, straight (no JSON between), checked as pyshm_encode checks; p names
 * the top. Raises and returns -1 when it does not fit. */
int pyshm_encode_mp(msgpack_packer *pk, const shmrpc_dyn_type *t, PyObject *v, const place *p);

/* A call's arguments (argv in sig's parameter order, NULL for one left out) as the codec's
 * JSON object by parameter name, into json (cleared first). Raises and returns -1. */
int pyshm_encode_args(const shmrpc_dyn_sig *sig, PyObject **argv, shmrpc_buf *json);

/* --- decode.c ------------------------------------------------------------------------ */

/* The n bytes of a body of sig's result type (a response, a typed queue's message, a typed
 * map's value) as a Python value; json is scratch space. Raises shmrpc.Error for a body
 * that does not decode. */
PyObject *pyshm_decode(const shmrpc_dyn_sig *sig, const void *body, size_t n, shmrpc_buf *json,
                       const char *what);

/* One msgpack value of type t read from r as a Python value; raises shmrpc.Error. */
PyObject *pyshm_from_mp(const shmrpc_dyn_type *t, shmrpc_mp_reader *r);

/* The n bytes of a @msgpack body of sig's result type, read whole, as a Python value; what
 * names it in messages ("add: result: ..."). Raises shmrpc.Error. */
PyObject *pyshm_decode_mp(const shmrpc_dyn_sig *sig, const void *body, size_t n, const char *what);

/* _set_struct_factory(f), a function of the module: f(name, dict) makes a struct's value. */
PyObject *pyshm_set_struct_factory(PyObject *mod, PyObject *f);

/* Imports what the decoder uses (json.loads, binascii.a2b_base64); -1 raised. */
int pyshm_decode_init(void);

/* --- lock.c -------------------------------------------------------------------------- */

/* Waits for the lock l (seconds; negative or infinite: for ever) with the GIL let go of, in
 * slices of at most 50 ms, so that a close of its handle from another thread ends the wait
 * within a slice. *users counts the threads inside (the GIL guards it); a close while there
 * are any sets *closing instead of unmapping, and the last to leave (SHMRPC_ECLOSED with
 * *users 0) unmaps. The lock's status (0, SHMRPC_EOWNERDEAD, SHMRPC_ETIMEDOUT, ...), or
 * SHMRPC_ECLOSED with the lock not held; its message in msg. */
int pyshm_lock_wait(shmrpc_lock *l, double seconds, int *users, const _Atomic bool *closing,
                    char *msg, size_t cap);

/* Adds HybridLock to the module. */
int pyshm_lock_init(PyObject *module);

/* --- dict.c -------------------------------------------------------------------------- */

/* The pickle protocol of Dict's and Queue's serializer=pickle: pinned, so that processes of
 * other Pythons (other defaults) write a key alike. */
#define PYSHM_PICKLE_PROTOCOL 4

/* A serializer= (anything with dumps and loads): its dumps, the second argument to pass it
 * (the pickle protocol, or NULL) and its loads, new references; -1 raised (TypeError). */
int pyshm_serializer(PyObject *ser, PyObject **dumps, PyObject **dumps_arg, PyObject **loads);

/* dumps(v[, dumps_arg]) as bytes (a str in UTF-8); NULL raised. */
PyObject *pyshm_dumps(PyObject *dumps, PyObject *dumps_arg, PyObject *v);

/* The exception being raised, raised again with "LABEL: its message" (its own type when
 * that takes a message, else TypeError), the original as its cause. */
void pyshm_relabel(PyObject *label);

/* Adds shmrpc.Dict's C half (_DictCore) to the module. */
int pyshm_dict_init(PyObject *module);

/* --- the module's other parts, each added by its init (_shmrpc.c calls them) ---------- */

/* The queue and map types (store.c), added to the module by pyshm_store_init, which adds
 * shmrpc.Dict's C half (dict.c) and HybridLock (lock.c) too. */
int pyshm_store_init(PyObject *module);

/* serve() and the .svc reader (serve.c), added to the module by pyshm_serve_init. */
int pyshm_serve_init(PyObject *module);

/* speedysvc's send() (send.c), added to the module by pyshm_send_init. */
int pyshm_send_init(PyObject *module);

/* shmrpc.connect's Connection and its Method (client.c). */
int pyshm_client_init(PyObject *module);

#endif
