/* SPDX-License-Identifier: MIT */
/* shmrpc.connect's Connection, a client of any shmrpc service, and its methods (c.add): the
 * server's own method table drives the conversions through the library's dynamic codec
 * (shmrpc/dynamic.h): Python values are checked against the method's parsed signature and
 * written as its arguments, and the result is turned into Python values by the same
 * signature (docs/python.md). @raw methods skip the codec: their bytes go to the wire as
 * they are. */
#include "pyshmrpc.h"

#include <structmember.h>

#include <math.h>
#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <msgpack.h>

#include <shmrpc/client.h>
#include <shmrpc/codec.h>
#include <shmrpc/dynamic.h>
#include <shmrpc/metadata.h>
#include <shmrpc/status.h>
#include <shmrpc/tcp.h>

#if PY_VERSION_HEX < 0x030D0000 /* public from 3.13 */
#define Py_IsFinalizing _Py_IsFinalizing
#endif

struct StreamObject;

typedef struct {
    PyObject_HEAD shmrpc_dyn *d; /* NULL when closed */
    char *addr;
    shmrpc_client_opts opts;
    uint8_t secret[SHMRPC_SECRET_MAX];
    unsigned forks;          /* pyshm_forks() when d connected: in the process that did */
    uint64_t gen;            /* counts the d's this object had: the key of Methods' caches */
    char *tls[4];            /* tls_ca, tls_cert, tls_key, tls_server_name (opts points here) */
    PyThread_type_lock lock; /* one call at a time on d (dynamic.h) */
    shmrpc_buf out;          /* the result's JSON */
    /* Client.intercept's, registered on each d this object connects */
    pyshm_icpt icpts[SHMRPC_MAX_INTERCEPTORS];
    int n_icpts;
    PyObject *pending; /* what a hook raised during the call in flight, to raise again */
    PyObject *meta;    /* the metadata every call sends, {str: str}, or NULL: none; set
                        * again on each new d (a forked child's) */
    struct StreamObject *duplex; /* the stream both ways open on d, which holds lock */
} ClientObject;

/* Connects self->d anew (the GIL released meanwhile); raises on failure. */
static int client_open(ClientObject *self)
{
    shmrpc_dyn *d = NULL;
    int rc;
    char msg[512] = "";
    Py_BEGIN_ALLOW_THREADS;
    rc = shmrpc_dyn_new(&d, &self->opts);
    if (rc == 0) rc = shmrpc_dyn_connect(d, self->addr);
    if (rc != 0) snprintf(msg, sizeof msg, "%s", shmrpc_errmsg());
    Py_END_ALLOW_THREADS;
    if (rc != 0) {
        shmrpc_dyn_free(d);
        pyshm_raise_status(rc, self->addr, msg);
        return -1;
    }
    for (int i = 0; i < self->n_icpts; i++) {
        shmrpc_interceptor hooks = pyshm_icpt_hooks(&self->icpts[i]);
        if ((rc = shmrpc_client_intercept(shmrpc_dyn_client(d), &hooks, &self->icpts[i])) != 0) {
            pyshm_raise_status(rc, self->addr, shmrpc_errmsg());
            shmrpc_dyn_free(d);
            return -1;
        }
    }
    self->d = d;
    self->forks = pyshm_forks();
    self->gen++;
    /* A new client of the library: the metadata set on this one (checked when set). */
    PyObject *k, *v;
    Py_ssize_t pos = 0;
    while (self->meta && PyDict_Next(self->meta, &pos, &k, &v))
        shmrpc_client_metadata_set(shmrpc_dyn_client(d), PyUnicode_AsUTF8(k), PyUnicode_AsUTF8(v));
    return 0;
}

static int Client_init(ClientObject *self, PyObject *args, PyObject *kw)
{
    static char *kwlist[] = {
        "address",  "timeout", "max_message_size", "secret_file", "tls", "tls_ca",
        "tls_cert", "tls_key", "tls_server_name",  "tls_verify",  NULL};
    const char *addr;
    PyObject *timeout = NULL, *secret_file = Py_None, *tls_verify = Py_None;
    PyObject *tls_text[4] = {Py_None, Py_None, Py_None, Py_None};
    Py_ssize_t max_msg = 0;
    int tls = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "s|$OnOpOOOOO:connect", kwlist, &addr, &timeout,
                                     &max_msg, &secret_file, &tls, &tls_text[0], &tls_text[1],
                                     &tls_text[2], &tls_text[3], &tls_verify))
        return -1;
    if (self->d != NULL || self->addr != NULL) {
        PyErr_SetString(PyExc_RuntimeError, "a client is initialised once");
        return -1;
    }
    shmrpc_client_opts_init(&self->opts);
    if (timeout == Py_None) {
        self->opts.timeout_ms = SHMRPC_TIMEOUT_INFINITE;
    } else if (timeout != NULL) {
        double s = PyFloat_AsDouble(timeout);
        if (s == -1.0 && PyErr_Occurred()) return -1;
        if (!(s > 0) || s > 2e9) {
            PyErr_SetString(PyExc_ValueError, "timeout is seconds above 0 (None: no limit)");
            return -1;
        }
        self->opts.timeout_ms = (int64_t)ceil(s * 1000);
    }
    if (max_msg < 0) {
        PyErr_SetString(PyExc_ValueError, "max_message_size is bytes, 0 for the default");
        return -1;
    }
    self->opts.max_msg_bytes = (size_t)max_msg;
    if (secret_file != Py_None) {
        PyObject *path = NULL;
        if (!PyUnicode_FSConverter(secret_file, &path)) return -1;
        int rc = shmrpc_secret_load(PyBytes_AS_STRING(path), self->secret, sizeof self->secret,
                                    &self->opts.tcp.secret_len);
        Py_DECREF(path);
        if (rc != 0) {
            pyshm_raise_status(rc, "secret_file", shmrpc_errmsg());
            return -1;
        }
        self->opts.tcp.secret = self->secret;
    }
    /* TLS (docs/wire.md): the files' names are kept, as the library reads the files at
     * every connect; any of them implies tls. */
    const char **tls_opt[4] = {&self->opts.tcp.tls_ca, &self->opts.tcp.tls_cert,
                               &self->opts.tcp.tls_key, &self->opts.tcp.tls_server_name};
    for (int i = 0; i < 4; i++) {
        if (tls_text[i] == Py_None) continue;
        PyObject *bytes = NULL;
        if (!PyUnicode_FSConverter(tls_text[i], &bytes)) return -1;
        self->tls[i] = strdup(PyBytes_AS_STRING(bytes));
        Py_DECREF(bytes);
        if (!self->tls[i]) {
            PyErr_NoMemory();
            return -1;
        }
        *tls_opt[i] = self->tls[i];
        tls = 1;
    }
    if (tls_verify != Py_None) {
        int v = PyObject_IsTrue(tls_verify);
        if (v < 0) return -1;
        self->opts.tcp.tls_verify = v ? SHMRPC_TLS_VERIFY_ON : SHMRPC_TLS_VERIFY_OFF;
        tls = 1;
    }
    if (tls) self->opts.tcp.tls = SHMRPC_TLS_ON;
    if ((self->addr = strdup(addr)) == NULL || (self->lock = PyThread_allocate_lock()) == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    return client_open(self);
}

static void Client_dealloc(ClientObject *self)
{
    /* A connection inherited over fork is only unmapped by free (client.h): safe here. */
    shmrpc_dyn_free(self->d);
    free(self->addr);
    for (int i = 0; i < 4; i++)
        free(self->tls[i]);
    if (self->lock) PyThread_free_lock(self->lock);
    shmrpc_buf_destroy(&self->out);
    for (int i = 0; i < self->n_icpts; i++)
        pyshm_icpt_clear(&self->icpts[i]);
    Py_CLEAR(self->pending);
    Py_XDECREF(self->meta);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyObject *Client_new(PyTypeObject *type, PyObject *args, PyObject *kw)
{
    (void)args, (void)kw;
    ClientObject *self = (ClientObject *)type->tp_alloc(type, 0);
    if (self != NULL) shmrpc_buf_init(&self->out);
    return (PyObject *)self;
}

static bool duplex_refuses(ClientObject *self);

/* Takes self's lock, waiting without the GIL in slices of 50 ms: a stream both ways holds
 * it for its whole life, and a wait learns of one within a slice. false, not taken, while
 * one does (duplex_refuses: not while its end is under way, which lets the lock go). */
static bool client_lock(ClientObject *self)
{
    while (!PyThread_acquire_lock(self->lock, NOWAIT_LOCK)) {
        if (self->duplex != NULL && duplex_refuses(self)) return false;
        PyLockStatus got;
        Py_BEGIN_ALLOW_THREADS;
        got = PyThread_acquire_lock_timed(self->lock, 50 * 1000, 0);
        Py_END_ALLOW_THREADS;
        if (got == PY_LOCK_ACQUIRED) break;
    }
    return true;
}

/* Takes the client's lock, waiting without the GIL; a forked child first replaces the
 * lock it inherited (another thread of the parent may have held it) and its connection.
 * While a stream both ways is open, refused at once (the library's EBUSY of a call beside a
 * stream). */
static int client_enter(ClientObject *self)
{
    if (self->lock == NULL) {
        PyErr_SetString(pyshm_Unavailable, "the client is not initialised");
        return -1;
    }
    if (self->forks != pyshm_forks()) {
        PyThread_type_lock fresh = PyThread_allocate_lock();
        if (fresh == NULL) {
            PyErr_NoMemory();
            return -1;
        }
        self->lock = fresh; /* the inherited one may be held for ever: left as it is */
        self->duplex = NULL; /* the parent's, whose sender did not come along */
        if (self->d != NULL) {
            shmrpc_dyn_free(self->d);
            self->d = NULL;
            self->forks = pyshm_forks();
            if (client_open(self) != 0) return -1;
        }
        self->forks = pyshm_forks();
    }
    if (!client_lock(self)) {
        pyshm_raise_as(pyshm_HandlerError, SHMRPC_EBUSY, self->addr,
                       "a stream is open on this client", false);
        return -1;
    }
    if (self->d == NULL) {
        PyThread_release_lock(self->lock);
        PyErr_SetString(pyshm_Unavailable, "the client is closed");
        return -1;
    }
    return 0;
}

/* The arguments of a call in parameter order, into out (NULL for one left out): the
 * positional ones (pos, npos), then those by name, either as a vectorcall passes them
 * (kwnames, their values after the positional ones in pos) or in a dict (kwdict). */
static int bind_args(const shmrpc_dyn_sig *sig, PyObject *const *pos, Py_ssize_t npos,
                     PyObject *kwnames, PyObject *kwdict, PyObject **out)
{
    if ((size_t)npos > sig->n_params) {
        PyErr_Format(PyExc_TypeError, "%s() takes %zu arguments, %zd given", sig->method,
                     sig->n_params, npos);
        return -1;
    }
    for (size_t i = 0; i < sig->n_params; i++)
        out[i] = (Py_ssize_t)i < npos ? pos[i] : NULL;
    Py_ssize_t nkw = kwnames ? PyTuple_GET_SIZE(kwnames) : 0, pos_in_dict = 0;
    for (Py_ssize_t j = 0;; j++) {
        PyObject *k, *v;
        if (kwnames != NULL) {
            if (j == nkw) break;
            k = PyTuple_GET_ITEM(kwnames, j);
            v = pos[npos + j];
        } else if (kwdict == NULL || !PyDict_Next(kwdict, &pos_in_dict, &k, &v)) {
            break;
        }
        size_t i = 0;
        while (PyUnicode_Check(k) && i < sig->n_params &&
               PyUnicode_CompareWithASCIIString(k, sig->params[i].name) != 0)
            i++;
        if (!PyUnicode_Check(k)) i = sig->n_params;
        if (i == sig->n_params) {
            PyErr_Format(PyExc_TypeError, "%s() has no parameter %R", sig->method, k);
            return -1;
        }
        if (out[i] != NULL) {
            PyErr_Format(PyExc_TypeError, "%s() got argument '%s' twice", sig->method,
                         sig->params[i].name);
            return -1;
        }
        out[i] = v;
    }
    for (size_t i = 0; i < sig->n_params; i++)
        if (out[i] == NULL && sig->params[i].type->kind != SHMRPC_DYN_OPT) {
            PyErr_Format(PyExc_TypeError, "%s() is missing argument '%s'", sig->method,
                         sig->params[i].name);
            return -1;
        }
    return 0;
}
/* The method called name of self's connection; raises AttributeError when there is none. */
static int find_method(ClientObject *self, const char *name, const shmrpc_method_info **m,
                       const shmrpc_dyn_sig **sig)
{
    int rc = shmrpc_dyn_method(self->d, name, m, sig);
    if (rc == 0) return 0;
    if (rc == SHMRPC_ENOENT)
        PyErr_Format(PyExc_AttributeError, "%s", shmrpc_errmsg());
    else
        pyshm_raise_status(rc, name, shmrpc_errmsg());
    return -1;
}

/* A call's arguments as a request of sig, checked against it and encoded into req (for
 * @msgpack straight to msgpack, unless via_codec asks for the codec's JSON path, which
 * tests compare it with). The arguments as bind_args takes them. With direct, a @raw
 * request that is a bytes object (immutable) is pointed at in *direct rather than copied,
 * and a reference to it is kept in *held (NULL otherwise) until the call is over: the
 * caller's arguments may be a dict that another thread changes while the GIL is let go.
 * -1 raised. */
static int build_request(ClientObject *self, const shmrpc_dyn_sig *sig, PyObject *const *pos,
                         Py_ssize_t npos, PyObject *kwnames, PyObject *kwdict, bool via_codec,
                         shmrpc_buf *req, shmrpc_bytes *direct, PyObject **held)
{
    PyObject *argv_small[16], **argv = argv_small;
    const char *name = sig->method;
    int status = -1, rc;
    if (sig->client_stream) { /* its items go apart (items_call): no one request to build */
        PyErr_Format(PyExc_TypeError, "%s() streams its parameter: it has no one request", name);
        return -1;
    }
    if (sig->n_params > 16 && (argv = PyMem_Calloc(sig->n_params, sizeof *argv)) == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    if (bind_args(sig, pos, npos, kwnames, kwdict, argv) != 0) goto done;
    if (sig->encoding == SHMRPC_ENC_RAW) {
        /* @raw: the bytes as they are, no codec (its one parameter is bytes). */
        Py_buffer view;
        place here = {.field = sig->params[0].name};
        if (PyBytes_CheckExact(argv[0]) && direct) { /* the common case: sent as it is */
            *direct = shmrpc_bytes_of((const uint8_t *)PyBytes_AS_STRING(argv[0]),
                                      (size_t)PyBytes_GET_SIZE(argv[0]));
            *held = Py_NewRef(argv[0]);
            rc = 0;
        } else if (PyBytes_CheckExact(argv[0])) { /* without a buffer view */
            rc = shmrpc_buf_append(req, PyBytes_AS_STRING(argv[0]),
                                   (size_t)PyBytes_GET_SIZE(argv[0]));
        } else if (PyUnicode_Check(argv[0]) ||
                   PyObject_GetBuffer(argv[0], &view, PyBUF_SIMPLE) != 0) {
            PyErr_Clear();
            pyshm_fail_at(PyExc_TypeError, &here, "expected bytes, got %s",
                          Py_TYPE(argv[0])->tp_name);
            goto done;
        } else {
            rc = shmrpc_buf_append(req, view.buf, (size_t)view.len);
            PyBuffer_Release(&view);
        }
        if (rc != 0) {
            pyshm_raise_status(rc, name, "the request does not fit");
            goto done;
        }
    } else if (sig->encoding == SHMRPC_ENC_MSGPACK && !via_codec) {
        /* Straight to msgpack, as the codec would write it, without the JSON between. */
        msgpack_packer pk;
        msgpack_packer_init(&pk, req, shmrpc_buf_msgpack_write);
        msgpack_pack_array(&pk, sig->n_params);
        for (size_t i = 0; i < sig->n_params; i++) {
            place here = {.field = sig->params[i].name};
            if (pyshm_encode_mp(&pk, sig->params[i].type, argv[i] ? argv[i] : Py_None, &here) != 0)
                goto done;
        }
        if (req->err != 0) {
            pyshm_raise_status(req->err, name, "the request does not fit");
            goto done;
        }
    } else {
        if (pyshm_encode_args(sig, argv, &self->out) != 0) goto done;
        if (shmrpc_dyn_encode_args(sig, (const char *)self->out.data, self->out.len, req) != 0) {
            /* What the checks above let through and the codec refuses (a value of the
             * right type it cannot carry): still before anything was sent. */
            PyErr_Format(PyExc_ValueError, "%s(): %s", name, shmrpc_errmsg());
            goto done;
        }
    }
    status = 0;
done:
    if (argv != argv_small) PyMem_Free(argv);
    return status;
}

static PyObject *stream_open(ClientObject *self, const shmrpc_method_info *m,
                             const shmrpc_dyn_sig *sig);
static PyObject *both_call(ClientObject *self, const shmrpc_method_info *m,
                           const shmrpc_dyn_sig *sig, PyObject *const *pos, Py_ssize_t npos,
                           PyObject *kwnames, PyObject *kwdict);
static PyObject *items_call(ClientObject *self, const shmrpc_method_info *m,
                            const shmrpc_dyn_sig *sig, PyObject *const *pos, Py_ssize_t npos,
                            PyObject *kwnames, PyObject *kwdict);

/* What a call that failed with rc (after its request was built) raises: what an
 * interceptor's hook raised, or the status with its message. */
static void raise_failed(ClientObject *self, int rc, const char *name, const char *msg)
{
    if (self->pending != NULL) {
        /* An interceptor's hook raised: the caller gets that exception itself. */
        PyObject *e = self->pending;
        self->pending = NULL;
        PyErr_Restore(Py_NewRef(Py_TYPE(e)), e, PyException_GetTraceback(e));
        return;
    }
    /* After a request went out, SHMRPC_EINVAL and the like are the server's answer (a
     * handler's error status with its message). */
    bool answered = rc == SHMRPC_EINVAL || rc == SHMRPC_EPERM || rc == SHMRPC_EBUSY;
    pyshm_raise_as(answered ? pyshm_HandlerError : NULL, rc, name, msg, true);
}

/* A result's (or an item's) body of method sig as a Python value. */
static PyObject *decode_body(ClientObject *self, const shmrpc_dyn_sig *sig, shmrpc_bytes body)
{
    if (sig->encoding == SHMRPC_ENC_RAW)
        return PyBytes_FromStringAndSize((const char *)body.ptr, (Py_ssize_t)body.len);
    if (sig->encoding == SHMRPC_ENC_MSGPACK)
        return pyshm_decode_mp(sig, body.ptr, body.len, sig->method);
    return pyshm_decode(sig, body.ptr, body.len, &self->out, sig->method);
}

/* One call of m (sig its parsed signature) with these arguments, self's lock held (and
 * let go of here): the request built, sent and waited for without the GIL, and its
 * answer as a Python value; or, for a method whose result streams, the stream opened. */
static PyObject *call_locked(ClientObject *self, const shmrpc_method_info *m,
                             const shmrpc_dyn_sig *sig, PyObject *const *pos, Py_ssize_t npos,
                             PyObject *kwnames, PyObject *kwdict)
{
    PyObject *result = NULL;
    const char *name = sig->method;
    shmrpc_client *c = shmrpc_dyn_client(self->d);
    int rc;
    shmrpc_bytes direct = {NULL, 0}; /* a @raw call's bytes, sent from where they are */
    PyObject *held = NULL;           /* their object, until the call is over */
    if (sig->client_stream && sig->server_stream)
        return both_call(self, m, sig, pos, npos, kwnames, kwdict);
    if (sig->client_stream) return items_call(self, m, sig, pos, npos, kwnames, kwdict);
    /* A stream's open sends the client's request: its bytes are copied there. */
    if (build_request(self, sig, pos, npos, kwnames, kwdict, false, shmrpc_client_request(c),
                      sig->server_stream ? NULL : &direct, &held) != 0)
        goto done;
    if (sig->server_stream) {
        result = stream_open(self, m, sig);
        goto done;
    }
    shmrpc_bytes resp;
    char msg[1024];
    Py_BEGIN_ALLOW_THREADS;
    rc = direct.ptr ? shmrpc_client_call_raw(c, m->id, direct, &resp)
                    : shmrpc_client_call(c, m->id, &resp);
    if (rc != 0) snprintf(msg, sizeof msg, "%s", shmrpc_errmsg());
    Py_END_ALLOW_THREADS;
    if (rc != 0) {
        raise_failed(self, rc, name, msg);
        goto done;
    }
    Py_CLEAR(self->pending);
    result = decode_body(self, sig, resp);
done:
    Py_XDECREF(held);
    PyThread_release_lock(self->lock);
    return result;
}

/* The arguments of _call and _request (name, args: tuple, kwargs: dict or None, and for
 * _request via_codec: want of them; usage the message when they are not), the client's lock
 * taken and the method called name found: 0 with the lock held, or -1 raised without it. */
static int enter_method(ClientObject *self, PyObject *const *a, Py_ssize_t na, Py_ssize_t want,
                        const char *usage, const shmrpc_method_info **m, const shmrpc_dyn_sig **sig)
{
    if (na != want || !PyUnicode_Check(a[0]) || !PyTuple_Check(a[1]) ||
        (a[2] != Py_None && !PyDict_Check(a[2]))) {
        PyErr_SetString(PyExc_TypeError, usage);
        return -1;
    }
    const char *name = PyUnicode_AsUTF8(a[0]);
    if (name == NULL || client_enter(self) != 0) return -1;
    if (find_method(self, name, m, sig) != 0) {
        PyThread_release_lock(self->lock);
        return -1;
    }
    return 0;
}

/* _call(name, args, kwargs): one call of the method called name. */
static PyObject *Client_call(ClientObject *self, PyObject *const *a, Py_ssize_t na)
{
    const shmrpc_method_info *m;
    const shmrpc_dyn_sig *sig;
    if (enter_method(self, a, na, 3, "_call(name, args: tuple, kwargs: dict)", &m, &sig) != 0)
        return NULL;
    return call_locked(self, m, sig, &PyTuple_GET_ITEM(a[1], 0), PyTuple_GET_SIZE(a[1]), NULL,
                       a[2] == Py_None ? NULL : a[2]);
}

/* _request(name, args, kwargs, via_codec): the request body a call would send, not sent. */
static PyObject *Client_request(ClientObject *self, PyObject *const *a, Py_ssize_t na)
{
    const shmrpc_method_info *m;
    const shmrpc_dyn_sig *sig;
    if (enter_method(self, a, na, 4, "_request(name, args: tuple, kwargs: dict, via_codec)", &m,
                     &sig) != 0)
        return NULL;
    shmrpc_buf req;
    shmrpc_buf_init(&req);
    PyObject *r = NULL;
    if (build_request(self, sig, &PyTuple_GET_ITEM(a[1], 0), PyTuple_GET_SIZE(a[1]), NULL,
                      a[2] == Py_None ? NULL : a[2], PyObject_IsTrue(a[3]) == 1, &req, NULL,
                      NULL) == 0)
        r = PyBytes_FromStringAndSize((const char *)req.data, (Py_ssize_t)req.len);
    shmrpc_buf_destroy(&req);
    PyThread_release_lock(self->lock);
    return r;
}

/* Method i's signature as Python shows it: its canonical text (its structs and enums
 * spelled out, as help() shows them; the table names them alone), or the table's when it
 * does not parse or spells out too long (shmrpc_dyn_sig_text's bounds). */
static PyObject *signature_of(ClientObject *self, const shmrpc_service_info *info, uint32_t i,
                              shmrpc_buf *text)
{
    const shmrpc_method_info *m;
    const shmrpc_dyn_sig *sig;
    const char *sigtext = info->methods[i].signature;
    shmrpc_buf_clear(text);
    if (shmrpc_dyn_method(self->d, info->methods[i].name, &m, &sig) == 0 &&
        shmrpc_dyn_sig_text(sig, text) == 0 && shmrpc_buf_append(text, "", 1) == 0)
        sigtext = (const char *)text->data;
    return PyUnicode_FromString(sigtext);
}

/* The table: a list of (name, signature) in the server's order. */
static PyObject *Client_methods(ClientObject *self, void *unused)
{
    (void)unused;
    if (client_enter(self) != 0) return NULL;
    const shmrpc_service_info *info = shmrpc_dyn_info(self->d);
    PyObject *list = PyList_New(0);
    shmrpc_buf text;
    shmrpc_buf_init(&text);
    for (uint32_t i = 0; list != NULL && info != NULL && i < info->n_methods; i++) {
        PyObject *sig = signature_of(self, info, i, &text);
        PyObject *t = sig ? Py_BuildValue("(sN)", info->methods[i].name, sig) : NULL;
        if (t == NULL || PyList_Append(list, t) != 0) Py_CLEAR(list);
        Py_XDECREF(t);
    }
    shmrpc_buf_destroy(&text);
    PyThread_release_lock(self->lock);
    return list;
}

/* _intercept(obj): obj's before(call) and after(call, status) around every later call. */
static PyObject *Client_intercept(ClientObject *self, PyObject *obj)
{
    if (self->n_icpts == SHMRPC_MAX_INTERCEPTORS)
        return PyErr_Format(PyExc_ValueError, "a client has at most %d interceptors",
                            SHMRPC_MAX_INTERCEPTORS);
    pyshm_icpt *i = &self->icpts[self->n_icpts];
    if (pyshm_icpt_from(obj, i) != 0) return NULL;
    i->pending = &self->pending;
    if (client_enter(self) != 0) {
        pyshm_icpt_clear(i);
        return NULL;
    }
    shmrpc_interceptor hooks = pyshm_icpt_hooks(i);
    int rc = shmrpc_client_intercept(shmrpc_dyn_client(self->d), &hooks, i);
    PyThread_release_lock(self->lock);
    if (rc != 0) {
        pyshm_icpt_clear(i);
        return pyshm_raise_status(rc, self->addr, shmrpc_errmsg());
    }
    self->n_icpts++;
    Py_RETURN_NONE;
}

/* _signature(name): one method's signature, or None when the table has no such method;
 * what Client.__getattr__ needs, without spelling out the whole table. */
static PyObject *Client_signature(ClientObject *self, PyObject *name)
{
    const char *n = PyUnicode_AsUTF8(name);
    if (n == NULL || client_enter(self) != 0) return NULL;
    const shmrpc_service_info *info = shmrpc_dyn_info(self->d);
    PyObject *r = NULL;
    for (uint32_t i = 0; info != NULL && i < info->n_methods && r == NULL; i++)
        if (strcmp(info->methods[i].name, n) == 0) {
            shmrpc_buf text;
            shmrpc_buf_init(&text);
            r = signature_of(self, info, i, &text);
            shmrpc_buf_destroy(&text);
            if (r == NULL) break;
        }
    PyThread_release_lock(self->lock);
    return r != NULL || PyErr_Occurred() ? r : Py_NewRef(Py_None);
}

/* _names(): the methods' names in the server's order. */
static PyObject *Client_names(ClientObject *self, PyObject *unused)
{
    (void)unused;
    if (client_enter(self) != 0) return NULL;
    const shmrpc_service_info *info = shmrpc_dyn_info(self->d);
    PyObject *list = PyList_New(0);
    for (uint32_t i = 0; list != NULL && info != NULL && i < info->n_methods; i++) {
        PyObject *n = PyUnicode_FromString(info->methods[i].name);
        if (n == NULL || PyList_Append(list, n) != 0) Py_CLEAR(list);
        Py_XDECREF(n);
    }
    PyThread_release_lock(self->lock);
    return list;
}

static PyObject *Client_service(ClientObject *self, void *unused)
{
    (void)unused;
    if (client_enter(self) != 0) return NULL;
    const shmrpc_service_info *info = shmrpc_dyn_info(self->d);
    PyObject *r = info ? PyUnicode_FromString(info->name) : Py_NewRef(Py_None);
    PyThread_release_lock(self->lock);
    return r;
}

static PyObject *Client_address(ClientObject *self, void *unused)
{
    (void)unused;
    return self->addr ? PyUnicode_FromString(self->addr) : Py_NewRef(Py_None);
}

static PyObject *Client_closed(ClientObject *self, void *unused)
{
    (void)unused;
    return PyBool_FromLong(self->d == NULL);
}

/* cancel(): from any thread, without the client's lock, which the call holds: the GIL keeps
 * close() from freeing d meanwhile. */
static PyObject *Client_cancel(ClientObject *self, PyObject *unused)
{
    (void)unused;
    if (self->d != NULL && self->forks == pyshm_forks())
        shmrpc_client_cancel(shmrpc_dyn_client(self->d));
    Py_RETURN_NONE;
}

/* _metadata_set(key, value): sets key for every later call (value None: removes it),
 * checked by the library (ValueError with its message). */
static PyObject *Client_metadata_set(ClientObject *self, PyObject *const *args, Py_ssize_t n)
{
    if (n != 2 || !PyUnicode_Check(args[0]) || (args[1] != Py_None && !PyUnicode_Check(args[1]))) {
        PyErr_SetString(PyExc_TypeError, "_metadata_set(key: str, value: str | None)");
        return NULL;
    }
    const char *key = PyUnicode_AsUTF8(args[0]);
    const char *value = args[1] == Py_None ? NULL : PyUnicode_AsUTF8(args[1]);
    if (!key || (args[1] != Py_None && !value)) return NULL;
    if (!self->meta && (self->meta = PyDict_New()) == NULL) return NULL;
    if (client_enter(self) != 0) return NULL;
    int rc = shmrpc_client_metadata_set(shmrpc_dyn_client(self->d), key, value);
    char msg[512];
    snprintf(msg, sizeof msg, "%s", rc ? shmrpc_errmsg() : "");
    PyThread_release_lock(self->lock);
    if (rc == SHMRPC_EINVAL) {
        PyErr_SetString(PyExc_ValueError, msg);
        return NULL;
    }
    if (rc != 0) return pyshm_raise_status(rc, "metadata", msg);
    int r = value ? PyDict_SetItem(self->meta, args[0], args[1])
                  : (PyDict_Contains(self->meta, args[0]) == 1 ? PyDict_DelItem(self->meta, args[0])
                                                               : 0);
    if (r != 0) return NULL;
    Py_RETURN_NONE;
}

/* _metadata_clear(): no metadata any more. */
static PyObject *Client_metadata_clear(ClientObject *self, PyObject *unused)
{
    (void)unused;
    if (client_enter(self) != 0) return NULL;
    shmrpc_client_metadata_clear(shmrpc_dyn_client(self->d));
    PyThread_release_lock(self->lock);
    if (self->meta) PyDict_Clear(self->meta);
    Py_RETURN_NONE;
}

/* _metadata(): a copy of what every call sends. */
static PyObject *Client_metadata(ClientObject *self, PyObject *unused)
{
    (void)unused;
    return self->meta ? PyDict_Copy(self->meta) : PyDict_New();
}

static int both_end(struct StreamObject *s);

static PyObject *Client_close(ClientObject *self, PyObject *unused)
{
    (void)unused;
    if (self->lock == NULL || self->d == NULL) Py_RETURN_NONE;
    if (self->forks == pyshm_forks()) {
        /* A stream both ways holds the lock: it ends first, a reference held while its end
         * lets go of the GIL. */
        while (!client_lock(self)) {
            PyObject *s = Py_NewRef((PyObject *)self->duplex);
            int rc = both_end(self->duplex);
            Py_DECREF(s);
            if (rc != 0) return NULL;
        }
        shmrpc_dyn_free(self->d); /* NULL after an end that left the connection (both_end) */
        self->d = NULL;
        PyThread_release_lock(self->lock);
    } else {
        shmrpc_dyn_free(self->d); /* the parent's lock means nothing here */
        self->d = NULL;
    }
    Py_RETURN_NONE;
}

/* --- a stream: what a call of a method whose result streams returns --------------------
 * An iterator of the items (docs/streams.md, docs/python.md): each next() waits for one
 * without the GIL, holding its connection's lock (another thread's call meanwhile waits,
 * then fails: a stream leaves its client to no call beside it until it ends). The end
 * stops the iteration; a failure raises, after the items that came, as a call's would.
 * close() (or leaving a with block, or the stream's collection) ends it early, and its
 * handler learns so. A stream both ways is told apart by its both, below. */
typedef struct StreamObject {
    PyObject_HEAD ClientObject *client;
    shmrpc_stream *st;         /* NULL once ended or closed */
    const shmrpc_dyn_sig *sig; /* the method's, valid while client->gen is gen */
    uint64_t gen;
    char *method;    /* its name, for a failure said after the connection is gone */
    unsigned forks;  /* pyshm_forks() at its open: the process that opened it */
    struct both *b;  /* a stream both ways: what it shares with its sender; else NULL */
    bool ending;     /* a stream both ways whose end (both_end) began */
    bool taking;     /* a stream both ways whose next() is under way */
    shmrpc_buf got;  /* a stream both ways: the item received, copied */
    shmrpc_buf json; /* a stream both ways: scratch space of its decoding */
} StreamObject;

static PyTypeObject StreamType;

/* A new Stream of sig's method on self, not open yet. */
static StreamObject *stream_new(ClientObject *self, const shmrpc_dyn_sig *sig)
{
    StreamObject *s = PyObject_New(StreamObject, &StreamType);
    if (s == NULL) return NULL;
    s->client = (ClientObject *)Py_NewRef(self);
    s->st = NULL;
    s->sig = sig;
    s->gen = self->gen;
    s->forks = pyshm_forks();
    s->b = NULL;
    s->ending = s->taking = false;
    shmrpc_buf_init(&s->got);
    shmrpc_buf_init(&s->json);
    if ((s->method = strdup(sig->method)) == NULL) {
        Py_DECREF(s);
        PyErr_NoMemory();
        return NULL;
    }
    return s;
}

/* Opens m's stream with the request in the client's, self's lock held (let go of by the
 * caller). */
static PyObject *stream_open(ClientObject *self, const shmrpc_method_info *m,
                             const shmrpc_dyn_sig *sig)
{
    StreamObject *s = stream_new(self, sig);
    if (s == NULL) return NULL;
    shmrpc_client *c = shmrpc_dyn_client(self->d);
    int rc;
    char msg[1024];
    Py_BEGIN_ALLOW_THREADS;
    rc = shmrpc_client_open(c, m->id, &s->st);
    if (rc != 0) snprintf(msg, sizeof msg, "%s", shmrpc_errmsg());
    Py_END_ALLOW_THREADS;
    if (rc != 0) {
        raise_failed(self, rc, sig->method, msg);
        Py_DECREF(s);
        return NULL;
    }
    Py_CLEAR(self->pending);
    return (PyObject *)s;
}

/* --- a client stream: a method whose parameter streams, called with an iterable ---------
 * Its items are sent in order, each encoded as the argument would be, and the call returns
 * the handler's answer (docs/python.md). The connection's lock is let go of while the
 * iterable makes its next item (a generator may run any code, a call on this connection too,
 * which then fails as a call beside a stream does) and taken again for the send, which waits
 * without the GIL. An exception of the iterable, an item that does not fit the type, or a
 * send that fails (but for the handler's return, whose answer then says the rest) closes the
 * stream (its handler told) and is raised. self's lock held, and let go of here. */

/* Closes st without the GIL: over inproc:// it waits for the handler to return. */
static void items_close(shmrpc_stream *st)
{
    Py_BEGIN_ALLOW_THREADS;
    shmrpc_stream_close(st);
    Py_END_ALLOW_THREADS;
}

/* Takes the connection's lock again for a stream st opened on it as generation gen: 0, or -1
 * raised with the stream closed when the connection was closed or made anew meanwhile. */
static int items_enter(ClientObject *self, shmrpc_stream *st, uint64_t gen, const char *name)
{
    if (client_enter(self) != 0) {
        items_close(st); /* closed with its client: its record alone is left */
        return -1;
    }
    if (self->gen != gen) {
        items_close(st);
        PyThread_release_lock(self->lock);
        pyshm_raise_status(SHMRPC_ECLOSED, name,
                           "the client connected again (after a fork) while the stream was open");
        return -1;
    }
    return 0;
}

/* Encodes item as the stream's parameter's item into b (cleared): 0, or -1 raised. */
static int item_encode(const shmrpc_dyn_sig *sig, PyObject *item, shmrpc_buf *b)
{
    shmrpc_buf_clear(b);
    place here = {.field = "item", .bare = true};
    if (sig->encoding == SHMRPC_ENC_RAW) {
        Py_buffer view;
        if (PyUnicode_Check(item) || PyObject_GetBuffer(item, &view, PyBUF_SIMPLE) != 0) {
            PyErr_Clear();
            return pyshm_fail_at(PyExc_TypeError, &here, "expected bytes, got %s",
                                 Py_TYPE(item)->tp_name);
        }
        shmrpc_buf_append(b, view.buf, (size_t)view.len);
        PyBuffer_Release(&view);
    } else {
        msgpack_packer pk;
        msgpack_packer_init(&pk, b, shmrpc_buf_msgpack_write);
        if (pyshm_encode_mp(&pk, sig->params[0].type, item, &here) != 0) return -1;
    }
    if (b->err != 0) {
        pyshm_raise_status(b->err, sig->method, "an item does not fit");
        return -1;
    }
    return 0;
}

/* The items' iterator of a call of a method whose parameter streams (its one argument, an
 * iterable), with the open's request written into c's: the empty arguments (no bytes for
 * @raw), as a generated stub sends. *at_hand when the items are a list's or a tuple's, all
 * there: the stream is corked then (shmrpc_stream_cork), not for items that may take their
 * time to come. NULL raised. */
static PyObject *items_of(shmrpc_client *c, const shmrpc_dyn_sig *sig, PyObject *const *pos,
                          Py_ssize_t npos, PyObject *kwnames, PyObject *kwdict, bool *at_hand)
{
    PyObject *arg = NULL;
    if (bind_args(sig, pos, npos, kwnames, kwdict, &arg) != 0) return NULL;
    if (arg == NULL) /* a stream of optionals, which bind_args lets go */
        return PyErr_Format(PyExc_TypeError, "%s() is missing argument '%s'", sig->method,
                            sig->params[0].name);
    *at_hand = PyList_CheckExact(arg) || PyTuple_CheckExact(arg);
    PyObject *it = PyObject_GetIter(arg);
    shmrpc_buf *req = shmrpc_client_request(c);
    if (it != NULL && sig->encoding != SHMRPC_ENC_RAW) shmrpc_buf_append(req, "\x90", 1);
    return it;
}

static PyObject *items_call(ClientObject *self, const shmrpc_method_info *m,
                            const shmrpc_dyn_sig *sig, PyObject *const *pos, Py_ssize_t npos,
                            PyObject *kwnames, PyObject *kwdict)
{
    const char *name = sig->method;
    PyObject *it, *result = NULL;
    shmrpc_client *c = shmrpc_dyn_client(self->d);
    shmrpc_stream *st = NULL;
    char msg[1024];
    int rc;
    bool at_hand;
    if ((it = items_of(c, sig, pos, npos, kwnames, kwdict, &at_hand)) == NULL) {
        PyThread_release_lock(self->lock);
        return NULL;
    }
    Py_BEGIN_ALLOW_THREADS;
    rc = shmrpc_client_open(c, m->id, &st);
    if (rc != 0) snprintf(msg, sizeof msg, "%s", shmrpc_errmsg());
    if (rc == 0 && at_hand) shmrpc_stream_cork(st, 1); /* a failure: the sends say it */
    Py_END_ALLOW_THREADS;
    if (rc != 0) {
        raise_failed(self, rc, name, msg);
        PyThread_release_lock(self->lock);
        Py_DECREF(it);
        return NULL;
    }
    Py_CLEAR(self->pending);
    uint64_t gen = self->gen;
    PyThread_release_lock(self->lock);
    shmrpc_buf item;
    shmrpc_buf_init(&item);
    for (rc = 0; rc == 0;) {
        PyObject *v = PyIter_Next(it);
        if (v == NULL && PyErr_Occurred()) goto failed;
        if (v == NULL) break;
        int bad = item_encode(sig, v, &item);
        Py_DECREF(v);
        if (bad) goto failed;
        if (items_enter(self, st, gen, name) != 0) goto out; /* st closed */
        Py_BEGIN_ALLOW_THREADS;
        rc = shmrpc_stream_send(st, item.data, item.len);
        if (rc != 0) snprintf(msg, sizeof msg, "%s", shmrpc_errmsg());
        Py_END_ALLOW_THREADS;
        PyThread_release_lock(self->lock);
        /* The handler returned: its answer says the rest. Any other failure is this send's
         * (an item above the maximum, which leaves the stream open), said now. */
        if (rc != 0 && rc != SHMRPC_ECLOSED) {
            raise_failed(self, rc, name, msg);
            goto failed;
        }
    }
    /* The answer, or how the stream ended: decoded before the close, which frees it. */
    if (items_enter(self, st, gen, name) != 0) goto out;
    shmrpc_bytes body;
    Py_BEGIN_ALLOW_THREADS;
    rc = shmrpc_stream_answer(st, &body);
    if (rc != 0) snprintf(msg, sizeof msg, "%s", shmrpc_errmsg());
    Py_END_ALLOW_THREADS;
    if (rc != 0)
        raise_failed(self, rc, name, msg);
    else
        result = decode_body(self, sig, body);
    Py_CLEAR(self->pending);
    items_close(st);
    PyThread_release_lock(self->lock);
    goto out;
failed:; /* raised: the stream closed, its handler told, and what was raised kept */
    PyObject *type, *value, *tb;
    PyErr_Fetch(&type, &value, &tb);
    if (items_enter(self, st, gen, name) == 0) {
        items_close(st);
        PyThread_release_lock(self->lock);
    }
    PyErr_Clear();
    PyErr_Restore(type, value, tb);
out:
    shmrpc_buf_destroy(&item);
    Py_DECREF(it);
    return result;
}

/* --- a stream both ways: a method whose parameter and result both stream ---------------
 * c.doubled(iterable) opens the stream and returns its Stream at once (docs/python.md). A
 * thread of the module's own, the sender, takes the iterable's items (with the GIL), encodes
 * each as the argument would be and sends it (without), then says that no item follows;
 * next() receives, on whichever thread iterates (client.h: one thread sends while another
 * receives). Both convert by a signature of the stream's own (parsed again at the open),
 * since the sender may outlive the connection and a decode may run Python code, during
 * which another thread may close it. The stream holds its connection's lock for its whole
 * life, and a call beside it is refused at once (client_lock), from the iterable too. What
 * the iterable raises, or an item that does not fit, cancels the stream, and next() raises
 * it. The end (the last item, a failure, close(), collection, the connection's close)
 * stops the sender at its next item, cancels a thread that waits inside the library, waits
 * until neither is inside, then closes the stream and lets the connection go. The marks of
 * who is inside are set and cleared without the GIL: a finalizing interpreter ends a thread
 * that asks for the GIL, and a mark it left set would hold the end for ever. */
typedef struct both {
    pthread_mutex_t mu;
    pthread_cond_t cv;                /* broadcast when a mark is cleared (CLOCK_MONOTONIC) */
    int refs;                         /* the Stream's and the sender's (under mu) */
    bool over;                        /* the end began: nothing enters the library (under mu) */
    bool sending, receiving;          /* a thread inside the library (under mu)... */
    unsigned long send_tid, recv_tid; /* ...and which (an interceptor's hook runs there) */
    shmrpc_stream *st;
    shmrpc_client *c;
    shmrpc_dyn *own;           /* where sig lives, b's own */
    const shmrpc_dyn_sig *sig; /* the method's, parsed again from its text */
    PyObject *it;              /* the items' iterator, the sender's (GIL) */
    PyObject *raised;          /* what ended the sends, for next() to raise (GIL) */
} both;

/* Sets *mark (b's sending or receiving) and *tid, this thread, unless the end began or the
 * mark is set: true when it set them. */
static bool both_mark(both *b, bool *mark, unsigned long *tid)
{
    pthread_mutex_lock(&b->mu);
    bool set = !b->over && !*mark;
    if (set) {
        *mark = true;
        *tid = PyThread_get_thread_ident();
    }
    pthread_mutex_unlock(&b->mu);
    return set;
}

static void both_unmark(both *b, bool *mark)
{
    pthread_mutex_lock(&b->mu);
    *mark = false;
    pthread_cond_broadcast(&b->cv);
    pthread_mutex_unlock(&b->mu);
}

/* Whether this thread is inside the library for b: an interceptor's hook that it runs. */
static bool both_inside(both *b)
{
    unsigned long me = PyThread_get_thread_ident();
    pthread_mutex_lock(&b->mu);
    bool inside = (b->sending && b->send_tid == me) || (b->receiving && b->recv_tid == me);
    pthread_mutex_unlock(&b->mu);
    return inside;
}

/* Drops a reference to b, the GIL held; the last frees it. */
static void both_unref(both *b)
{
    pthread_mutex_lock(&b->mu);
    bool last = --b->refs == 0;
    pthread_mutex_unlock(&b->mu);
    if (!last) return;
    Py_CLEAR(b->it);
    Py_CLEAR(b->raised);
    shmrpc_dyn_free(b->own);
    pthread_cond_destroy(&b->cv);
    pthread_mutex_destroy(&b->mu);
    PyMem_RawFree(b);
}

/* A new both of sig's method for the client c, its own signature parsed; NULL raised. */
static both *both_new(shmrpc_client *c, const shmrpc_dyn_sig *sig, PyObject *it)
{
    shmrpc_buf text;
    shmrpc_buf_init(&text);
    both *b = PyMem_RawCalloc(1, sizeof *b);
    if (b == NULL || shmrpc_dyn_new(&b->own, NULL) != 0 || shmrpc_dyn_sig_text(sig, &text) != 0 ||
        shmrpc_buf_append(&text, "", 1) != 0 ||
        shmrpc_dyn_sig_parse(b->own, (const char *)text.data, &b->sig) != 0) {
        shmrpc_buf_destroy(&text);
        if (b != NULL) shmrpc_dyn_free(b->own);
        PyMem_RawFree(b);
        PyErr_NoMemory();
        return NULL;
    }
    shmrpc_buf_destroy(&text);
    pthread_condattr_t ca;
    pthread_mutex_init(&b->mu, NULL);
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&b->cv, &ca);
    pthread_condattr_destroy(&ca);
    b->refs = 1;
    b->c = c;
    b->it = Py_NewRef(it);
    return b;
}

/* The pending exception, kept in b for next() to raise; the stream cancelled (its handler
 * told, the receives ended). */
static void both_raised(both *b)
{
    PyObject *type, *value, *tb;
    PyErr_Fetch(&type, &value, &tb);
    PyErr_NormalizeException(&type, &value, &tb);
    if (tb != NULL) PyException_SetTraceback(value, tb);
    Py_XDECREF(type);
    Py_XDECREF(tb);
    Py_XSETREF(b->raised, value);
    Py_BEGIN_ALLOW_THREADS;
    if (both_mark(b, &b->sending, &b->send_tid)) {
        shmrpc_client_cancel(b->c);
        both_unmark(b, &b->sending);
    }
    Py_END_ALLOW_THREADS;
}

/* The sender's thread: the iterable's items in order, then the stream's done. */
static void both_send(void *arg)
{
    both *b = arg;
    PyGILState_STATE gil = PyGILState_Ensure();
    shmrpc_buf item;
    shmrpc_buf_init(&item);
    char msg[1024];
    int rc = 0;
    bool in = true;
    while (in && rc == 0) {
        PyObject *v = PyIter_Next(b->it);
        if (v == NULL) break;
        int bad = item_encode(b->sig, v, &item);
        Py_DECREF(v);
        if (bad) break;
        Py_BEGIN_ALLOW_THREADS;
        if ((in = both_mark(b, &b->sending, &b->send_tid))) {
            rc = shmrpc_stream_send(b->st, item.data, item.len);
            if (rc != 0) snprintf(msg, sizeof msg, "%s", shmrpc_errmsg());
            both_unmark(b, &b->sending);
        }
        Py_END_ALLOW_THREADS;
    }
    /* An item above the maximum fails its own send and leaves the stream open; any other
     * failure is the stream's end, which the receives say (ECLOSED: the handler returned). */
    if (rc == SHMRPC_ETOOBIG) pyshm_raise_as(NULL, rc, b->sig->method, msg, true);
    if (PyErr_Occurred()) {
        both_raised(b);
    } else if (in && rc == 0) {
        Py_BEGIN_ALLOW_THREADS;
        if (both_mark(b, &b->sending, &b->send_tid)) {
            shmrpc_stream_done(b->st);
            both_unmark(b, &b->sending);
        }
        Py_END_ALLOW_THREADS;
    }
    shmrpc_buf_destroy(&item);
    Py_CLEAR(b->it); /* a generator's finally runs now, not at the stream's collection */
    both_unref(b);
    PyGILState_Release(gil);
}

/* Opens m's stream both ways, self's lock held: the lock is the Stream's from then on (let
 * go of here on a failure), and its sender is started on the items of the one argument. */
static PyObject *both_call(ClientObject *self, const shmrpc_method_info *m,
                           const shmrpc_dyn_sig *sig, PyObject *const *pos, Py_ssize_t npos,
                           PyObject *kwnames, PyObject *kwdict)
{
    const char *name = sig->method;
    shmrpc_client *c = shmrpc_dyn_client(self->d);
    PyObject *it;
    StreamObject *s = NULL;
    char msg[1024];
    int rc;
    bool at_hand;
    if ((it = items_of(c, sig, pos, npos, kwnames, kwdict, &at_hand)) == NULL ||
        (s = stream_new(self, sig)) == NULL || (s->b = both_new(c, sig, it)) == NULL)
        goto failed;
    Py_CLEAR(it);
    both *b = s->b;
    Py_BEGIN_ALLOW_THREADS;
    rc = shmrpc_client_open(b->c, m->id, &s->st);
    if (rc != 0) snprintf(msg, sizeof msg, "%s", shmrpc_errmsg());
    if (rc == 0 && at_hand) shmrpc_stream_cork(s->st, 1); /* before the sender starts */
    Py_END_ALLOW_THREADS;
    if (rc != 0) {
        raise_failed(self, rc, name, msg);
        goto failed;
    }
    Py_CLEAR(self->pending);
    b->st = s->st;
    self->duplex = s;
    b->refs++; /* the sender's */
    if (PyThread_start_new_thread(both_send, b) == PYTHREAD_INVALID_THREAD_ID) {
        b->refs--;
        both_end(s);
        Py_DECREF(s);
        PyErr_SetString(PyExc_RuntimeError,
                        "cannot start the thread that sends the stream's items");
        return NULL;
    }
    return (PyObject *)s;
failed:
    Py_XDECREF(it);
    Py_XDECREF(s); /* not open: its record alone */
    PyThread_release_lock(self->lock);
    return NULL;
}

/* Ends self's stream both ways (the GIL held), as the comment above says, unless it ended:
 * 0; -1 raised (RuntimeError) when this thread is inside the library for it (an
 * interceptor's hook), which the end would wait for. Another thread's end of it under way
 * is waited for. An exception pending stays, and hooks that the close runs do not see it.
 * At the interpreter's end a thread still inside the library after 1 s is left there, with
 * the stream and the connection, which the client then says is closed. */
static int both_end(StreamObject *self)
{
    both *b = self->b;
    ClientObject *c = self->client;
    if (self->st != NULL && both_inside(b)) {
        PyErr_Format(PyExc_RuntimeError,
                     "%s: the stream cannot be ended from inside its own send or receive (an "
                     "interceptor's hook)",
                     self->method);
        return -1;
    }
    while (self->st != NULL && self->ending) { /* another thread's end */
        Py_BEGIN_ALLOW_THREADS;
        nanosleep(&(struct timespec){.tv_nsec = 10 * 1000 * 1000}, NULL);
        Py_END_ALLOW_THREADS;
    }
    if (self->st == NULL) return 0;
    self->ending = true;
    PyObject *type, *value, *tb;
    PyErr_Fetch(&type, &value, &tb);
    bool finalizing = Py_IsFinalizing(), inside;
    Py_BEGIN_ALLOW_THREADS;
    struct timespec give_up;
    clock_gettime(CLOCK_MONOTONIC, &give_up);
    give_up.tv_sec += 1;
    pthread_mutex_lock(&b->mu);
    b->over = true;
    if (b->sending || b->receiving) shmrpc_client_cancel(b->c); /* ends the stream's waits */
    while ((inside = b->sending || b->receiving))
        if (!finalizing)
            pthread_cond_wait(&b->cv, &b->mu);
        else if (pthread_cond_timedwait(&b->cv, &b->mu, &give_up) == ETIMEDOUT)
            break;
    pthread_mutex_unlock(&b->mu);
    if (!inside) shmrpc_stream_close(self->st);
    Py_END_ALLOW_THREADS;
    self->st = NULL;
    if (inside) c->d = NULL; /* left to the thread inside: never freed */
    c->duplex = NULL;
    Py_CLEAR(c->pending);
    PyErr_Restore(type, value, tb);
    PyThread_release_lock(c->lock);
    return 0;
}

/* An item of a stream both ways as a Python value, by the stream's own signature. */
static PyObject *both_decode(StreamObject *self)
{
    const shmrpc_dyn_sig *sig = self->b->sig;
    if (sig->encoding == SHMRPC_ENC_RAW)
        return PyBytes_FromStringAndSize((const char *)self->got.data, (Py_ssize_t)self->got.len);
    if (sig->encoding == SHMRPC_ENC_MSGPACK)
        return pyshm_decode_mp(sig, self->got.data, self->got.len, sig->method);
    return pyshm_decode(sig, self->got.data, self->got.len, &self->json, sig->method);
}

/* Whether the stream both ways open on self refuses a call now: unless its end is under way
 * on another thread (the call then waits for the lock that the end lets go of). */
static bool duplex_refuses(ClientObject *self)
{
    return !self->duplex->ending || both_inside(self->duplex->b);
}

/* next() of a stream both ways. One thread at a time takes its items (taking, under the
 * GIL), each copied into got before its mark is cleared: a close may free the stream then. */
static PyObject *both_next(StreamObject *self)
{
    both *b = self->b;
    if (self->st == NULL || self->ending) return NULL; /* StopIteration */
    if (self->taking)
        return PyErr_Format(PyExc_RuntimeError, "%s: another thread is taking this stream's items",
                            self->method);
    if (!both_mark(b, &b->receiving, &b->recv_tid)) return NULL;
    self->taking = true;
    shmrpc_bytes body;
    char msg[1024];
    int rc;
    bool copied = true;
    Py_BEGIN_ALLOW_THREADS;
    rc = shmrpc_stream_recv(self->st, &body);
    if (rc < 0) snprintf(msg, sizeof msg, "%s", shmrpc_errmsg());
    shmrpc_buf_clear(&self->got);
    if (rc == 1) copied = shmrpc_buf_append(&self->got, body.ptr, body.len) == 0;
    both_unmark(b, &b->receiving);
    Py_END_ALLOW_THREADS;
    PyObject *item = NULL;
    if (self->ending) { /* closed by another thread meanwhile: StopIteration */
    } else if (rc == 1 && !copied) {
        PyErr_NoMemory();
    } else if (rc == 1) {
        item = both_decode(self);
    } else if (b->raised != NULL) { /* what the sender met, not the cancel it made */
        PyObject *e = b->raised;
        b->raised = NULL;
        PyErr_Restore(Py_NewRef(Py_TYPE(e)), e, PyException_GetTraceback(e));
    } else if (rc < 0) {
        raise_failed(self->client, rc, self->method, msg);
    }
    self->taking = false;
    /* The end, a failure, or an item that does not decode (its handler told) end it. */
    if (item == NULL && !self->ending) both_end(self);
    if (rc >= 0) Py_CLEAR(self->client->pending);
    return item;
}

/* Closes the stream (its handler told, if it had not ended), with its client's lock held. */
static void stream_close_locked(StreamObject *self)
{
    shmrpc_stream *st = self->st;
    self->st = NULL;
    Py_BEGIN_ALLOW_THREADS; /* over inproc:// it waits for the handler to return */
    shmrpc_stream_close(st);
    Py_END_ALLOW_THREADS;
}

/* Whether the stream's connection is gone (the client closed, or connected anew after a
 * fork): the stream ended with it, and only its record is left to free. */
static bool stream_orphaned(const StreamObject *self)
{
    const ClientObject *c = self->client;
    return c->d == NULL || c->gen != self->gen || c->forks != pyshm_forks();
}

/* Whether self is a stream both ways of the parent process (this one forked since): its
 * sender is the parent's, and the parent's thread may have held what it shares, so the
 * stream is forgotten here (stream_orphaned's record to free, left to the parent). */
static bool both_of_parent(StreamObject *self)
{
    if (self->b == NULL || self->forks == pyshm_forks()) return false;
    self->st = NULL;
    self->b = NULL;
    return true;
}

static PyObject *Stream_next(StreamObject *self)
{
    if (self->st == NULL) return NULL; /* StopIteration */
    if (both_of_parent(self))
        return pyshm_raise_status(SHMRPC_ECLOSED, self->method,
                                  "the stream is the parent's: this process forked while it "
                                  "was open");
    if (self->b != NULL) return both_next(self);
    if (client_enter(self->client) != 0) return NULL;
    if (self->st == NULL || self->client->gen != self->gen) {
        /* Ended by another thread meanwhile; or orphaned by a new connection (a forked
         * child's), whose recv would only say so. */
        if (self->st != NULL) {
            shmrpc_stream_close(self->st);
            self->st = NULL;
            pyshm_raise_status(
                SHMRPC_ECLOSED, self->method,
                "the client connected again (after a fork) while the stream was open");
        }
        PyThread_release_lock(self->client->lock);
        return NULL;
    }
    PyObject *item = NULL;
    shmrpc_bytes body;
    char msg[1024];
    int rc;
    Py_BEGIN_ALLOW_THREADS;
    rc = shmrpc_stream_recv(self->st, &body);
    if (rc < 0) snprintf(msg, sizeof msg, "%s", shmrpc_errmsg());
    Py_END_ALLOW_THREADS;
    if (rc == 1) item = decode_body(self->client, self->sig, body);
    if (rc < 0) raise_failed(self->client, rc, self->method, msg);
    /* The end, a failure, or an item that does not decode (its handler is told) end it. */
    if (item == NULL) stream_close_locked(self);
    if (rc >= 0) Py_CLEAR(self->client->pending);
    PyThread_release_lock(self->client->lock);
    return item;
}

static PyObject *Stream_close(StreamObject *self, PyObject *unused)
{
    (void)unused;
    if (self->st == NULL || both_of_parent(self)) Py_RETURN_NONE;
    if (self->b != NULL) {
        if (both_end(self) != 0) return NULL;
        Py_RETURN_NONE;
    }
    if (stream_orphaned(self)) {
        shmrpc_stream_close(self->st);
        self->st = NULL;
        Py_RETURN_NONE;
    }
    if (client_enter(self->client) != 0) return NULL;
    if (self->st != NULL) stream_close_locked(self);
    Py_CLEAR(self->client->pending);
    PyThread_release_lock(self->client->lock);
    Py_RETURN_NONE;
}

static PyObject *Stream_enter(StreamObject *self, PyObject *unused)
{
    (void)unused;
    return Py_NewRef(self);
}

static PyObject *Stream_exit(StreamObject *self, PyObject *const *args, Py_ssize_t n)
{
    (void)args, (void)n;
    PyObject *r = Stream_close(self, NULL);
    if (r == NULL) return NULL;
    Py_DECREF(r);
    Py_RETURN_FALSE;
}

/* Collected open: closed as close() would, raising nothing. Its connection's lock is waited
 * for at most 10 s: a thread that holds it while this one is collected (a hook of its
 * call, say) would otherwise wait for itself; the stream is then left open, as the
 * client's, until the client goes. */
static void Stream_dealloc(StreamObject *self)
{
    ClientObject *c = self->client;
    if (self->b != NULL) {
        if (!both_of_parent(self)) {
            if (both_end(self) == 0) {
                both_unref(self->b);
            } else { /* its last reference dropped by a hook inside it: left open */
                PyErr_WriteUnraisable(NULL);
            }
        }
    } else if (self->st != NULL && stream_orphaned(self)) {
        shmrpc_stream_close(self->st);
    } else if (self->st != NULL) {
        int got;
        Py_BEGIN_ALLOW_THREADS;
        got = PyThread_acquire_lock_timed(c->lock, 10 * 1000 * 1000, 0);
        Py_END_ALLOW_THREADS;
        if (got == PY_LOCK_ACQUIRED) {
            if (c->d == NULL) /* closed meanwhile: the record alone */
                shmrpc_stream_close(self->st);
            else
                stream_close_locked(self);
            PyThread_release_lock(c->lock);
        }
    }
    free(self->method);
    shmrpc_buf_destroy(&self->got);
    shmrpc_buf_destroy(&self->json);
    Py_XDECREF(c);
    PyObject_Free(self);
}

static PyMethodDef Stream_methods[] = {
    {"close", (PyCFunction)Stream_close, METH_NOARGS,
     "Ends the stream before its end (its handler learns so); nothing after it."},
    {"__enter__", (PyCFunction)Stream_enter, METH_NOARGS, NULL},
    {"__exit__", (PyCFunction)(void (*)(void))Stream_exit, METH_FASTCALL, NULL},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject StreamType = {
    PYSHM_TYPE("shmrpc._shmrpc.Stream", StreamObject, 0,
               "The items of a method whose result streams, as an iterator (docs/streams.md)."),
    .tp_dealloc = (destructor)Stream_dealloc,
    .tp_iter = PyObject_SelfIter,
    .tp_iternext = (iternextfunc)Stream_next,
    .tp_methods = Stream_methods,
};

/* --- a method of a connection: what c.add is ------------------------------------------
 * A callable with the vectorcall protocol, so that c.add(40, 2) reaches the call with its
 * arguments as they are on the interpreter's stack: no tuple, dict or Python frame per
 * call. It keeps the method's table entry and parsed signature for the connection it was
 * looked up on (its gen), looking them up again only when the connection was made anew
 * (after a fork). Attributes (__signature__, __doc__) live in its __dict__: shmrpc/
 * __init__.py sets them for help(). */

typedef struct {
    PyObject_HEAD ClientObject *conn;
    PyObject *name;              /* str */
    const shmrpc_method_info *m; /* of conn->d when gen == conn->gen */
    const shmrpc_dyn_sig *sig;
    uint64_t gen; /* 0: nothing looked up yet */
    PyObject *dict;
    vectorcallfunc vectorcall;
} MethodObject;

static PyObject *Method_vectorcall(MethodObject *self, PyObject *const *args, size_t nargsf,
                                   PyObject *kwnames)
{
    ClientObject *conn = self->conn;
    if (client_enter(conn) != 0) return NULL;
    if (self->gen != conn->gen) {
        const char *name = PyUnicode_AsUTF8(self->name);
        if (name == NULL || find_method(conn, name, &self->m, &self->sig) != 0) {
            self->gen = 0;
            PyThread_release_lock(conn->lock);
            return NULL;
        }
        self->gen = conn->gen;
    }
    return call_locked(conn, self->m, self->sig, args, PyVectorcall_NARGS(nargsf), kwnames, NULL);
}

static int Method_traverse(MethodObject *self, visitproc visit, void *arg)
{
    Py_VISIT(self->conn);
    Py_VISIT(self->dict);
    return 0;
}

static int Method_clear(MethodObject *self)
{
    Py_CLEAR(self->conn);
    Py_CLEAR(self->dict);
    return 0;
}

static void Method_dealloc(MethodObject *self)
{
    PyObject_GC_UnTrack(self);
    Method_clear(self);
    Py_CLEAR(self->name);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

/* Bound to nothing: a method of a connection is taken from the client as it is. Having
 * __get__ makes it a routine to inspect and pydoc, which then show its __signature__. */
static PyObject *Method_get(PyObject *self, PyObject *obj, PyObject *type)
{
    (void)obj, (void)type;
    return Py_NewRef(self);
}

static PyObject *Method_repr(MethodObject *self)
{
    return PyUnicode_FromFormat("<shmrpc method %U>", self->name);
}

static PyMemberDef Method_members[] = {
    {"__name__", T_OBJECT, offsetof(MethodObject, name), READONLY, "The method's name."},
    {"__qualname__", T_OBJECT, offsetof(MethodObject, name), READONLY, NULL},
    {NULL, 0, 0, 0, NULL},
};

static PyGetSetDef Method_getset[] = {
    {"__dict__", PyObject_GenericGetDict, PyObject_GenericSetDict, NULL, NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyTypeObject MethodType = {
    PYSHM_TYPE("shmrpc._shmrpc.Method", MethodObject,
               Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_HAVE_VECTORCALL,
               "A method of a connection (c.add): calling it calls the server."),
    .tp_dealloc = (destructor)Method_dealloc,
    .tp_traverse = (traverseproc)Method_traverse,
    .tp_clear = (inquiry)Method_clear,
    .tp_call = PyVectorcall_Call,
    .tp_vectorcall_offset = offsetof(MethodObject, vectorcall),
    .tp_dictoffset = offsetof(MethodObject, dict),
    .tp_descr_get = Method_get,
    .tp_repr = (reprfunc)Method_repr,
    .tp_members = Method_members,
    .tp_getset = Method_getset,
};

/* _method(name): the method called name, as a callable (raises AttributeError when the
 * server has none). */
static PyObject *Client_method(ClientObject *self, PyObject *name)
{
    if (!PyUnicode_Check(name)) {
        PyErr_SetString(PyExc_TypeError, "_method(name: str)");
        return NULL;
    }
    const char *s = PyUnicode_AsUTF8(name);
    if (s == NULL || client_enter(self) != 0) return NULL;
    const shmrpc_method_info *m;
    const shmrpc_dyn_sig *sig;
    int rc = find_method(self, s, &m, &sig);
    PyThread_release_lock(self->lock);
    if (rc != 0) return NULL;
    MethodObject *o = PyObject_GC_New(MethodObject, &MethodType);
    if (o == NULL) return NULL;
    o->conn = (ClientObject *)Py_NewRef(self);
    o->name = Py_NewRef(name);
    o->m = m;
    o->sig = sig;
    o->gen = self->gen;
    o->dict = NULL;
    o->vectorcall = (vectorcallfunc)Method_vectorcall;
    PyObject_GC_Track(o);
    return (PyObject *)o;
}

static PyMethodDef Client_methods_def[] = {
    {"_call", (PyCFunction)(void (*)(void))Client_call, METH_FASTCALL,
     "_call(name, args, kwargs): calls the method called name."},
    {"_method", (PyCFunction)Client_method, METH_O,
     "_method(name): the method called name, a callable (c.add is one)."},
    {"_intercept", (PyCFunction)Client_intercept, METH_O,
     "_intercept(obj): obj.before(call) and obj.after(call, status) around every later call."},
    {"_signature", (PyCFunction)Client_signature, METH_O,
     "_signature(name): the method's canonical signature, or None when there is none."},
    {"_names", (PyCFunction)Client_names, METH_NOARGS, "_names(): the methods' names."},
    {"_request", (PyCFunction)(void (*)(void))Client_request, METH_FASTCALL,
     "_request(name, args, kwargs, via_codec): the request body, not sent (for tests)."},
    {"cancel", (PyCFunction)Client_cancel, METH_NOARGS,
     "Cancels the call in flight on this connection (made by another thread): it raises "
     "Cancelled, and its handler sees shmrpc.cancelled()."},
    {"_metadata_set", (PyCFunction)(void (*)(void))Client_metadata_set, METH_FASTCALL,
     "_metadata_set(key, value): sets (None: removes) a pair every later call sends."},
    {"_metadata_clear", (PyCFunction)Client_metadata_clear, METH_NOARGS,
     "_metadata_clear(): removes every pair."},
    {"_metadata", (PyCFunction)Client_metadata, METH_NOARGS,
     "_metadata(): {key: value}, what every call sends."},
    {"close", (PyCFunction)Client_close, METH_NOARGS, "Closes the connection."},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef Client_getset[] = {
    {"methods", (getter)Client_methods, NULL, "The server's method table: (name, signature) pairs.",
     NULL},
    {"service", (getter)Client_service, NULL, "The service's name in its .svc.", NULL},
    {"address", (getter)Client_address, NULL, "The address connected to.", NULL},
    {"closed", (getter)Client_closed, NULL, "True after close().", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyTypeObject ClientType = {
    PYSHM_TYPE("shmrpc._shmrpc.Connection", ClientObject, Py_TPFLAGS_BASETYPE,
               "A connection to one shmrpc service (see shmrpc.connect)."),
    .tp_new = Client_new,
    .tp_init = (initproc)Client_init,
    .tp_dealloc = (destructor)Client_dealloc,
    .tp_methods = Client_methods_def,
    .tp_getset = Client_getset,
};

int pyshm_client_init(PyObject *module)
{
    if (PyType_Ready(&ClientType) != 0 || PyType_Ready(&MethodType) != 0 ||
        PyType_Ready(&StreamType) != 0 ||
        PyModule_AddObjectRef(module, "Stream", (PyObject *)&StreamType) != 0 ||
        PyModule_AddObjectRef(module, "Connection", (PyObject *)&ClientType) != 0 ||
        PyModule_AddObjectRef(module, "Method", (PyObject *)&MethodType) != 0)
        return -1;
    return 0;
}
