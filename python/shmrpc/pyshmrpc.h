/* SPDX-License-Identifier: MIT */
/* What the parts of the shmrpc extension share: its exceptions, and the conversions
 * between Python values and the dynamic codec's JSON (_shmrpc.c), which the client and
 * the queues and maps (store.c) go through alike. */
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
#include <shmrpc/lock.h>

extern PyObject *pyshm_Error, *pyshm_Timeout, *pyshm_Unavailable, *pyshm_Mismatch,
    *pyshm_HandlerError, *pyshm_PeerDied;

/* Raises the exception of a failed library call (cls, or rc's own class when NULL), with
 * .status, .status_name, .message (msg) and .may_have_run; sent: the request had left. */
PyObject *pyshm_raise_as(PyObject *cls, int rc, const char *what, const char *msg, bool sent);
PyObject *pyshm_raise_status(int rc, const char *what, const char *msg);

/* The place inside a value, for messages: "argument 'points'[1].x", or "value.x" for a
 * top-level place marked bare. */
typedef struct place {
    const struct place *up;
    const char *field; /* a struct's field, or the top (up == NULL) */
    Py_ssize_t index;  /* a list's element, when field == NULL and key == NULL */
    PyObject *key;     /* a map's key */
    bool bare;         /* the top: its name alone, not "argument 'NAME'" */
} place;

/* Appends v as t's JSON to b, checked against t; raises (TypeError, ValueError,
 * OverflowError naming the place) and returns -1 when it does not fit. */
int pyshm_encode(shmrpc_buf *b, const shmrpc_dyn_type *t, PyObject *v, const place *p, int depth);

/* The n bytes of a body of sig's result type (a response, a typed queue's message, a typed
 * map's value) as a Python value; json is scratch space. Raises shmrpc.Error for a body
 * that does not decode. */
PyObject *pyshm_decode(const shmrpc_dyn_sig *sig, const void *body, size_t n, shmrpc_buf *json,
                       const char *what);

/* v as a body of sig's result type into out (cleared first); json is scratch space. what
 * names the value in messages ("value", "key"). Raises and returns -1 on a bad value. */
int pyshm_encode_body(const shmrpc_dyn_sig *sig, PyObject *v, const char *what, shmrpc_buf *json,
                      shmrpc_buf *out);

/* v as t's msgpack, straight (no JSON between), checked as pyshm_encode checks; p names
 * the top. Raises and returns -1 when it does not fit. */
int pyshm_encode_mp(msgpack_packer *pk, const shmrpc_dyn_type *t, PyObject *v, const place *p);

/* One msgpack value of type t read from r as a Python value; raises shmrpc.Error. */
PyObject *pyshm_from_mp(const shmrpc_dyn_type *t, shmrpc_mp_reader *r);

/* How many forks this process is from the one that imported the module (each child
 * counts one more, at the fork): "am I still the process that opened it", without getpid(). */
unsigned pyshm_forks(void);

/* serve() and the .svc reader (serve.c), added to the module by pyshm_serve_init. */
int pyshm_serve_init(PyObject *module);

/* speedysvc's send() (send.c), added to the module by pyshm_send_init. */
int pyshm_send_init(PyObject *module);

/* The queue and map types (store.c), added to the module by pyshm_store_init, which adds
 * shmrpc.Dict's C half (dict.c) and HybridLock (lock.c) too. */
int pyshm_store_init(PyObject *module);
int pyshm_dict_init(PyObject *module);
int pyshm_lock_init(PyObject *module);

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

/* Waits for the lock l (seconds; negative or infinite: for ever) with the GIL let go of, in
 * slices of at most 50 ms, so that a close of its handle from another thread ends the wait
 * within a slice. *users counts the threads inside (the GIL guards it); a close while there
 * are any sets *closing instead of unmapping, and the last to leave (SHMRPC_ECLOSED with
 * *users 0) unmaps. The lock's status (0, SHMRPC_EOWNERDEAD, SHMRPC_ETIMEDOUT, ...), or
 * SHMRPC_ECLOSED with the lock not held; its message in msg. (lock.c) */
int pyshm_lock_wait(shmrpc_lock *l, double seconds, int *users, const _Atomic bool *closing,
                    char *msg, size_t cap);

#endif
