/* SPDX-License-Identifier: MIT */
/* shmrpc.Queue and shmrpc.Map: the shared-memory queues and maps (shmrpc/queue.h,
 * shmrpc/map.h) from Python, opened by name. A typed one (its type signature stored in
 * the segment, as .svc declarations make them) takes and gives Python values converted by
 * that signature, as shmrpcctl queue and map do; an untyped one takes and gives bytes, or
 * any Python value through a serializer= (pickle, marshal, json, ...) of a Queue. */
#include "pyshmrpc.h"

#include <math.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <shmrpc/map.h>
#include <shmrpc/queue.h>
#include <shmrpc/status.h>

/* Seconds (None: for ever) to the library's milliseconds; -2 raised. */
static int64_t timeout_ms(PyObject *t, int64_t forever)
{
    if (t == NULL || t == Py_None) return forever;
    double s = PyFloat_AsDouble(t);
    if (s == -1.0 && PyErr_Occurred()) return -2;
    if (!(s >= 0) || s > 2e9) {
        PyErr_SetString(PyExc_ValueError, "timeout is seconds, 0 or more (None: no limit)");
        return -2;
    }
    return (int64_t)ceil(s * 1000);
}

/* The parsed type of a store (NULL for an untyped one); d holds it. */
static int parse_type(const char *type, shmrpc_dyn **d, const shmrpc_dyn_sig **sig)
{
    *sig = NULL;
    if (type == NULL || *type == '\0') return 0;
    int rc = shmrpc_dyn_new(d, NULL);
    if (rc == 0) rc = shmrpc_dyn_sig_parse(*d, type, sig);
    if (rc != 0) {
        PyErr_Format(pyshm_Error, "cannot read the stored type %s: %s", type, shmrpc_errmsg());
        return -1;
    }
    return 0;
}

/* Bytes of an untyped store's value, or the body of a typed one's, into out. */
static int to_body(const shmrpc_dyn_sig *sig, PyObject *v, const char *what, shmrpc_buf *json,
                   shmrpc_buf *out)
{
    if (sig != NULL && sig->encoding == SHMRPC_ENC_MSGPACK) {
        /* Straight to msgpack, as a call's arguments go: the codec's JSON between would bound
         * an any by its JSON forms' depth ({"map": [[k, v]]} is three levels) and cost a
         * text and a parse per value. */
        place top = {.field = what, .bare = true};
        shmrpc_buf_clear(out);
        msgpack_packer pk;
        msgpack_packer_init(&pk, out, shmrpc_buf_msgpack_write);
        if (pyshm_encode_mp(&pk, sig->result, v, &top) != 0) return -1;
        if (out->err == 0) return 0;
        pyshm_raise_status(out->err, what, "the value does not fit");
        return -1;
    }
    if (sig != NULL) return pyshm_encode_body(sig, v, what, json, out);
    Py_buffer view;
    if (PyUnicode_Check(v) || PyObject_GetBuffer(v, &view, PyBUF_SIMPLE) != 0) {
        PyErr_Clear();
        PyErr_Format(PyExc_TypeError, "%s: expected bytes (an untyped store), got %s", what,
                     Py_TYPE(v)->tp_name);
        return -1;
    }
    shmrpc_buf_clear(out);
    int rc = shmrpc_buf_append(out, view.buf, (size_t)view.len);
    PyBuffer_Release(&view);
    if (rc != 0) PyErr_NoMemory();
    return rc == 0 ? 0 : -1;
}

static PyObject *from_body(const shmrpc_dyn_sig *sig, const void *p, size_t n, shmrpc_buf *json,
                           const char *what)
{
    if (sig == NULL) return PyBytes_FromStringAndSize(p, (Py_ssize_t)n);
    if (sig->encoding != SHMRPC_ENC_MSGPACK) return pyshm_decode(sig, p, n, json, what);
    return pyshm_decode_mp(sig, p, n, what);
}

/* --- Queue ---------------------------------------------------------------------------- */

typedef struct {
    PyObject_HEAD shmrpc_queue
        *q; /* NULL when closed; a handle may be shared by threads (queue.h) */
    shmrpc_dyn *d;
    const shmrpc_dyn_sig *sig; /* the messages' type, NULL: bytes */
    /* serializer=: messages are dumps(value) and loads(message) (NULL: bytes or the type) */
    PyObject *dumps, *dumps_arg, *loads;
    char *name;
    size_t max_msg;
    /* Threads inside a push or pop, which run without the GIL on q (the GIL guards the
     * count): a close while there are any only marks the queue closing, and the last of
     * them closes it, so that close never unmaps what another thread is using. */
    int users;
    _Atomic bool closing; /* read by waiting threads without the GIL */
} QueueObject;

/* A push or pop waits in slices of at most this long: the library's waits cannot be cut
 * short, so a close() from another thread ends a wait within one slice. */
#define SLICE_MS 50

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* One push or pop of the slices, with the timeout of the slice. */
typedef int (*queue_op)(QueueObject *self, void *arg, int64_t ms);

/* Runs op, with the GIL let go of, in slices of the timeout ms (SHMRPC_QUEUE_WAIT_FOREVER:
 * none), until it does something other than time out, the time is up, or the queue was
 * closed meanwhile (SHMRPC_ECLOSED); the status, with its message in msg (a timeout's for
 * the whole wait: the queue stayed `state`). */
static int queue_wait(QueueObject *self, queue_op op, void *arg, int64_t ms, const char *state,
                      char *msg, size_t cap)
{
    int rc;
    Py_BEGIN_ALLOW_THREADS;
    int64_t end = ms == SHMRPC_QUEUE_WAIT_FOREVER ? INT64_MAX : now_ms() + ms;
    for (;;) {
        int64_t left = end == INT64_MAX ? INT64_MAX : end - now_ms();
        if (left < 0) left = 0;
        int64_t slice = left < SLICE_MS ? left : SLICE_MS;
        rc = op(self, arg, slice);
        if (rc != 0) snprintf(msg, cap, "%s", shmrpc_errmsg());
        if (rc != SHMRPC_ETIMEDOUT || slice == left) break;
        if (atomic_load(&self->closing)) {
            rc = SHMRPC_ECLOSED;
            snprintf(msg, cap, "queue '%s' was closed while this waited", self->name);
            break;
        }
    }
    if (rc == SHMRPC_ETIMEDOUT)
        snprintf(msg, cap, "queue '%s' stayed %s for %lld ms", self->name, state, (long long)ms);
    Py_END_ALLOW_THREADS;
    return rc;
}

struct pushing {
    const void *data;
    size_t len;
};

static int push_op(QueueObject *self, void *arg, int64_t ms)
{
    const struct pushing *p = arg;
    return shmrpc_queue_push(self->q, p->data, p->len, ms);
}

struct popping {
    void *buf;
    size_t len;
};

static int pop_op(QueueObject *self, void *arg, int64_t ms)
{
    struct popping *p = arg;
    return shmrpc_queue_pop(self->q, p->buf, self->max_msg, &p->len, ms);
}

/* A type for a store this open may create, checked before it does (a map's has one key):
 * the library stores any text, and a type found wrong only after the open left a store
 * behind whose type later opens refused. 0, or -1 raised. */
static int check_type(const char *type, bool map, const char *name)
{
    if (type == NULL || *type == '\0') return 0;
    shmrpc_dyn *d = NULL;
    const shmrpc_dyn_sig *sig = NULL;
    int rc = shmrpc_dyn_new(&d, NULL);
    if (rc == 0) rc = shmrpc_dyn_sig_parse(d, type, &sig);
    if (rc != 0)
        PyErr_Format(PyExc_ValueError, "%s: the type %s does not parse: %s", name, type,
                     shmrpc_errmsg());
    else if (map && sig->n_params != 1)
        PyErr_Format(PyExc_ValueError, "%s: the type %s has no key (a map's takes one)", name,
                     type);
    shmrpc_dyn_free(d);
    return PyErr_Occurred() ? -1 : 0;
}

/* A size option of the library's (u32), from a Python int: -1 raised when negative or too
 * large (it was cut to 32 bits without a word: 2**32 + 64 made 64). */
static int u32_option(Py_ssize_t v, const char *what, unsigned *out)
{
    if (v < 0) {
        PyErr_Format(PyExc_ValueError, "%s must be 0 or more, not %zd", what, v);
        return -1;
    }
    if ((uint64_t)v > UINT32_MAX) {
        PyErr_Format(PyExc_OverflowError, "%s %zd is above %u", what, v, (unsigned)UINT32_MAX);
        return -1;
    }
    *out = (unsigned)v;
    return 0;
}

static int Queue_init(QueueObject *self, PyObject *args, PyObject *kw)
{
    static char *kwlist[] = {"name",           "create",     "type", "capacity", "max_message_size",
                             "attach_timeout", "serializer", NULL};
    const char *name, *type = NULL;
    int create = 0;
    Py_ssize_t capacity_arg = 0, max_msg_arg = 0;
    unsigned capacity, max_msg;
    PyObject *attach = NULL, *ser = Py_None;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "s|$pznnOO:Queue", kwlist, &name, &create, &type,
                                     &capacity_arg, &max_msg_arg, &attach, &ser))
        return -1;
    if (ser != Py_None && type != NULL && *type) {
        PyErr_Format(PyExc_ValueError,
                     "%s: a queue takes a type or a serializer, not both (a typed queue's "
                     "messages are its type's msgpack)",
                     name);
        return -1;
    }
    if (ser != Py_None && (self->dumps || self->loads)) {
        PyErr_SetString(PyExc_RuntimeError, "a queue is opened once");
        return -1;
    }
    if (ser != Py_None && pyshm_serializer(ser, &self->dumps, &self->dumps_arg, &self->loads) != 0)
        return -1;
    if (u32_option(capacity_arg, "capacity", &capacity) != 0 ||
        u32_option(max_msg_arg, "max_message_size", &max_msg) != 0 ||
        check_type(type, false, name) != 0)
        return -1;
    if (self->q != NULL || self->name != NULL) {
        PyErr_SetString(PyExc_RuntimeError, "a queue is opened once");
        return -1;
    }
    shmrpc_queue_opts o;
    shmrpc_queue_opts_init(&o);
    o.mode = create ? SHMRPC_QUEUE_CONNECT_OR_CREATE : SHMRPC_QUEUE_CONNECT_TO_EXISTING;
    o.type = type;
    o.capacity = capacity;
    o.max_msg = max_msg;
    int64_t ms = timeout_ms(attach, SHMRPC_QUEUE_WAIT_FOREVER);
    if (ms == -2) return -1;
    o.attach_timeout_ms = attach == NULL ? 0 : ms;
    if ((self->name = strdup(name)) == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    int rc;
    char msg[512] = "";
    Py_BEGIN_ALLOW_THREADS;
    rc = shmrpc_queue_open(&self->q, name, &o);
    if (rc != 0) snprintf(msg, sizeof msg, "%s", shmrpc_errmsg());
    Py_END_ALLOW_THREADS;
    if (rc != 0) {
        self->q = NULL;
        pyshm_raise_as(rc == SHMRPC_ENOENT ? pyshm_Unavailable : NULL, rc, name, msg, false);
        return -1;
    }
    shmrpc_queue_info info;
    if ((rc = shmrpc_queue_get_info(self->q, &info)) != 0) {
        pyshm_raise_status(rc, name, shmrpc_errmsg());
        return -1;
    }
    self->max_msg = info.max_msg;
    if (self->dumps != NULL && *info.type) {
        PyErr_Format(PyExc_ValueError, "%s: the queue carries the type %s; it takes no serializer",
                     name, info.type);
        return -1;
    }
    return parse_type(info.type, &self->d, &self->sig);
}

static void Queue_dealloc(QueueObject *self)
{
    shmrpc_queue_close(self->q);
    shmrpc_dyn_free(self->d);
    free(self->name);
    Py_XDECREF(self->dumps);
    Py_XDECREF(self->dumps_arg);
    Py_XDECREF(self->loads);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

/* A serializer's failure raised again naming the queue. */
static void queue_relabel(QueueObject *self, const char *what)
{
    PyObject *t, *v, *tb;
    PyErr_Fetch(&t, &v, &tb);
    PyObject *label = PyUnicode_FromFormat("shmrpc.Queue '%s': %s", self->name, what);
    PyErr_Restore(t, v, tb);
    if (label == NULL) return;
    pyshm_relabel(label);
    Py_DECREF(label);
}

/* 0, or -1 raised when the queue is closed (or closing). */
static int queue_open(QueueObject *self)
{
    if (self->q != NULL && !atomic_load(&self->closing)) return 0;
    PyErr_SetString(pyshm_Unavailable, "the queue is closed");
    return -1;
}

/* Enters a push or pop: 0 (a user of q until queue_leave), or -1 raised when closed. */
static int queue_enter(QueueObject *self)
{
    if (queue_open(self) != 0) return -1;
    self->users++;
    return 0;
}

static void queue_leave(QueueObject *self)
{
    if (--self->users == 0 && atomic_load(&self->closing)) {
        shmrpc_queue_close(self->q);
        self->q = NULL;
        atomic_store(&self->closing, false);
    }
}

static PyObject *Queue_push(QueueObject *self, PyObject *args, PyObject *kw)
{
    static char *kwlist[] = {"value", "timeout", NULL};
    PyObject *v, *t = NULL;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "O|O:push", kwlist, &v, &t)) return NULL;
    int64_t ms = timeout_ms(t, SHMRPC_QUEUE_WAIT_FOREVER);
    if (ms == -2 || queue_enter(self)) return NULL;
    shmrpc_buf json, body;
    shmrpc_buf_init(&json);
    shmrpc_buf_init(&body);
    PyObject *r = NULL, *ser = NULL;
    int ok;
    if (self->dumps != NULL) {
        ser = pyshm_dumps(self->dumps, self->dumps_arg, v);
        if (ser == NULL) queue_relabel(self, "the serialization of the value");
        ok = ser != NULL;
    } else {
        ok = to_body(self->sig, v, "value", &json, &body) == 0;
    }
    if (ok) {
        char msg[512] = "";
        struct pushing p = {body.data, body.len};
        if (ser != NULL)
            p = (struct pushing){PyBytes_AS_STRING(ser), (size_t)PyBytes_GET_SIZE(ser)};
        int rc = queue_wait(self, push_op, &p, ms, "full", msg, sizeof msg);
        r = rc == 0 ? Py_NewRef(Py_None) : pyshm_raise_status(rc, self->name, msg);
    }
    queue_leave(self);
    Py_XDECREF(ser);
    shmrpc_buf_destroy(&json);
    shmrpc_buf_destroy(&body);
    return r;
}

static PyObject *Queue_pop(QueueObject *self, PyObject *args, PyObject *kw)
{
    static char *kwlist[] = {"timeout", NULL};
    PyObject *t = NULL;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "|O:pop", kwlist, &t)) return NULL;
    int64_t ms = timeout_ms(t, SHMRPC_QUEUE_WAIT_FOREVER);
    if (ms == -2) return NULL;
    void *buf = malloc(self->max_msg ? self->max_msg : 1);
    if (buf == NULL) return PyErr_NoMemory();
    if (queue_enter(self)) {
        free(buf);
        return NULL;
    }
    char msg[512] = "";
    struct popping p = {buf, 0};
    int rc = queue_wait(self, pop_op, &p, ms, "empty", msg, sizeof msg);
    size_t len = p.len;
    queue_leave(self);
    PyObject *r = NULL;
    if (rc != 0) {
        pyshm_raise_status(rc, self->name, msg);
    } else if (self->loads != NULL) {
        PyObject *b = PyBytes_FromStringAndSize(buf, (Py_ssize_t)len);
        r = b ? PyObject_CallOneArg(self->loads, b) : NULL;
        if (r == NULL && b != NULL) {
            queue_relabel(self, "a message does not load");
            /* The message has left the queue: its bytes go with the error, not nowhere. */
            PyObject *t, *v, *tb;
            PyErr_Fetch(&t, &v, &tb);
            PyErr_NormalizeException(&t, &v, &tb);
            if (v != NULL && PyObject_SetAttrString(v, "raw_message", b) != 0) PyErr_Clear();
            PyErr_Restore(t, v, tb);
        }
        Py_XDECREF(b);
    } else {
        shmrpc_buf json;
        shmrpc_buf_init(&json);
        r = from_body(self->sig, buf, len, &json, self->name);
        shmrpc_buf_destroy(&json);
    }
    free(buf);
    return r;
}

static PyObject *Queue_close(QueueObject *self, PyObject *unused)
{
    (void)unused;
    if (self->users > 0) {
        /* The last push or pop under way closes it; each ends its wait within a slice. */
        atomic_store(&self->closing, true);
    } else {
        shmrpc_queue_close(self->q);
        self->q = NULL;
    }
    Py_RETURN_NONE;
}

static PyObject *Queue_type(QueueObject *self, void *unused)
{
    (void)unused;
    shmrpc_queue_info info;
    if (queue_open(self) != 0) return NULL;
    int rc = shmrpc_queue_get_info(self->q, &info);
    if (rc != 0) return pyshm_raise_status(rc, self->name, shmrpc_errmsg());
    return *info.type ? PyUnicode_FromString(info.type) : Py_NewRef(Py_None);
}

static PyObject *Queue_name(QueueObject *self, void *unused)
{
    (void)unused;
    return self->name ? PyUnicode_FromString(self->name) : Py_NewRef(Py_None);
}

static PyObject *Queue_unlink(PyObject *cls, PyObject *name)
{
    (void)cls;
    const char *s = PyUnicode_AsUTF8(name);
    if (s == NULL) return NULL;
    int rc = shmrpc_queue_unlink(s);
    if (rc != 0) return pyshm_raise_status(rc, s, shmrpc_errmsg());
    Py_RETURN_NONE;
}

static PyObject *enter(PyObject *self, PyObject *unused)
{
    (void)unused;
    return Py_NewRef(self);
}

static PyObject *Queue_exit(QueueObject *self, PyObject *args)
{
    (void)args;
    return Queue_close(self, NULL);
}

static PyMethodDef Queue_methods[] = {
    {"push", (PyCFunction)(void (*)(void))Queue_push, METH_VARARGS | METH_KEYWORDS,
     "push(value, timeout=None): queues one message, waiting up to timeout seconds for room "
     "(None: for ever; 0: not at all); shmrpc.Timeout when full."},
    {"pop", (PyCFunction)(void (*)(void))Queue_pop, METH_VARARGS | METH_KEYWORDS,
     "pop(timeout=None): takes the oldest message, waiting up to timeout seconds; "
     "shmrpc.Timeout when empty."},
    {"close", (PyCFunction)Queue_close, METH_NOARGS, "Unmaps the queue."},
    {"unlink", (PyCFunction)Queue_unlink, METH_O | METH_STATIC,
     "Queue.unlink(name): removes the queue's name (open handles keep it)."},
    {"__enter__", enter, METH_NOARGS, NULL},
    {"__exit__", (PyCFunction)Queue_exit, METH_VARARGS, NULL},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef Queue_getset[] = {
    {"type", (getter)Queue_type, NULL, "The messages' type signature (None: bytes).", NULL},
    {"name", (getter)Queue_name, NULL, "The queue's name.", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyTypeObject QueueType = {
    PYSHM_TYPE("shmrpc.Queue", QueueObject, 0,
               "Queue(name, *, create=False, type=None, capacity=0, max_message_size=0, "
               "attach_timeout=None, serializer=None)\n\nA shared-memory queue by name "
               "(docs/queue.md); a typed one carries values of its stored type, an untyped one "
               "bytes, or any value through serializer (pickle, marshal, json, ...)."),
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)Queue_init,
    .tp_dealloc = (destructor)Queue_dealloc,
    .tp_methods = Queue_methods,
    .tp_getset = Queue_getset,
};

/* --- Map ------------------------------------------------------------------------------ */

typedef struct {
    PyObject_HEAD shmrpc_map *m; /* NULL when closed */
    PyThread_type_lock lock;     /* a map handle is one thread's at a time (map.h) */
    unsigned forks;              /* pyshm_forks() of the process that owns lock and m */
    shmrpc_dyn *d;
    const shmrpc_dyn_sig *sig; /* the values' type, NULL: bytes */
    shmrpc_dyn_sig key_sig;    /* the same with the key's type as its result */
    char *name;
    char *type; /* the stored type, for opening again in a forked child (NULL: untyped) */
} MapObject;

/* Opens name (as Map() with o) into *m, the GIL let go of meanwhile; raises. */
static int map_open(shmrpc_map **m, const char *name, const shmrpc_map_opts *o)
{
    int rc;
    char msg[512] = "";
    Py_BEGIN_ALLOW_THREADS;
    rc = shmrpc_map_open(m, name, o);
    if (rc != 0) snprintf(msg, sizeof msg, "%s", shmrpc_errmsg());
    Py_END_ALLOW_THREADS;
    if (rc == 0) return 0;
    *m = NULL;
    pyshm_raise_as(rc == SHMRPC_ENOENT ? pyshm_Unavailable : NULL, rc, name, msg, false);
    return -1;
}

static int Map_init(MapObject *self, PyObject *args, PyObject *kw)
{
    static char *kwlist[] = {"name", "create", "type", NULL};
    const char *name, *type = NULL;
    int create = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "s|$pz:Map", kwlist, &name, &create, &type))
        return -1;
    if (self->m != NULL || self->name != NULL) {
        PyErr_SetString(PyExc_RuntimeError, "a map is opened once");
        return -1;
    }
    if (check_type(type, true, name) != 0) return -1;
    shmrpc_map_opts o;
    shmrpc_map_opts_init(&o);
    o.mode = create ? SHMRPC_MAP_CONNECT_OR_CREATE : SHMRPC_MAP_CONNECT_TO_EXISTING;
    o.type = type;
    if ((self->name = strdup(name)) == NULL || (self->lock = PyThread_allocate_lock()) == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    self->forks = pyshm_forks();
    if (map_open(&self->m, name, &o) != 0) return -1;
    shmrpc_map_info info;
    int rc;
    if ((rc = shmrpc_map_get_info(self->m, &info)) != 0) {
        pyshm_raise_status(rc, name, shmrpc_errmsg());
        return -1;
    }
    if (*info.type && (self->type = strdup(info.type)) == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    if (parse_type(info.type, &self->d, &self->sig) != 0) return -1;
    if (self->sig != NULL) {
        if (self->sig->n_params != 1) {
            PyErr_Format(pyshm_Error, "%s: the stored type %s has no key", name, info.type);
            return -1;
        }
        self->key_sig = *self->sig;
        self->key_sig.result = self->sig->params[0].type;
    }
    return 0;
}

static void Map_dealloc(MapObject *self)
{
    shmrpc_map_close(self->m);
    shmrpc_dyn_free(self->d);
    free(self->name);
    free(self->type);
    /* A lock inherited over fork that a thread of the parent held is left as it is. */
    if (self->lock && self->forks == pyshm_forks()) PyThread_free_lock(self->lock);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

/* In a forked child, on its first use of a handle of the parent: a lock of its own, as a
 * thread of the parent may have held the inherited one at the fork (and will never let go
 * of it here). The inherited map handle serves the child too (the library claims a reader
 * slot of the child's own, map.h), unless that thread was inside a call on it (it held
 * the lock): the handle may be half-way through a change then, and the child opens the map
 * again by its name. -1 raised. */
static int map_after_fork(MapObject *self)
{
    PyThread_type_lock fresh = PyThread_allocate_lock();
    if (fresh == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    bool was_free = PyThread_acquire_lock(self->lock, NOWAIT_LOCK);
    if (was_free) PyThread_free_lock(self->lock);
    self->lock = fresh;
    self->forks = pyshm_forks();
    if (was_free || self->m == NULL) return 0;
    self->m = NULL; /* left as it is: unmapping what it was changing helps nobody */
    shmrpc_map_opts o;
    shmrpc_map_opts_init(&o);
    o.mode = SHMRPC_MAP_CONNECT_TO_EXISTING;
    o.type = self->type;
    return map_open(&self->m, self->name, &o);
}

/* Takes the handle's lock without the GIL; -1 raised when closed. */
static int map_enter(MapObject *self)
{
    if (self->lock == NULL) {
        PyErr_SetString(pyshm_Unavailable, "the map is not open");
        return -1;
    }
    if (self->forks != pyshm_forks() && map_after_fork(self) != 0) return -1;
    if (!PyThread_acquire_lock(self->lock, NOWAIT_LOCK)) {
        Py_BEGIN_ALLOW_THREADS;
        PyThread_acquire_lock(self->lock, WAIT_LOCK);
        Py_END_ALLOW_THREADS;
    }
    if (self->m == NULL) {
        PyThread_release_lock(self->lock);
        PyErr_SetString(pyshm_Unavailable, "the map is closed");
        return -1;
    }
    return 0;
}

/* The key's bytes into kb; -1 raised. */
static int map_key(MapObject *self, PyObject *k, shmrpc_buf *json, shmrpc_buf *kb)
{
    return to_body(self->sig ? &self->key_sig : NULL, k, "key", json, kb);
}

/* m[key], or *missing = true (nothing raised) when absent. */
static PyObject *map_get(MapObject *self, PyObject *k, bool *missing)
{
    *missing = false;
    if (map_enter(self) != 0) return NULL;
    shmrpc_buf json, kb;
    shmrpc_buf_init(&json);
    shmrpc_buf_init(&kb);
    PyObject *r = NULL;
    if (map_key(self, k, &json, &kb) == 0) {
        size_t cap = 256, len = 0;
        void *buf = malloc(cap);
        int rc = buf ? shmrpc_map_get(self->m, kb.data, kb.len, buf, cap, &len) : SHMRPC_ENOMEM;
        if (rc == SHMRPC_ETOOBIG) {
            void *big = realloc(buf, len);
            cap = len;
            rc = big ? shmrpc_map_get(self->m, kb.data, kb.len, (buf = big), cap, &len)
                     : SHMRPC_ENOMEM;
        }
        if (rc == SHMRPC_ENOENT)
            *missing = true;
        else if (rc != 0)
            pyshm_raise_status(rc, self->name, shmrpc_errmsg());
        else
            r = from_body(self->sig, buf, len, &json, self->name);
        free(buf);
    }
    shmrpc_buf_destroy(&json);
    shmrpc_buf_destroy(&kb);
    PyThread_release_lock(self->lock);
    return r;
}

static PyObject *Map_subscript(MapObject *self, PyObject *k)
{
    bool missing;
    PyObject *r = map_get(self, k, &missing);
    if (missing) PyErr_SetObject(PyExc_KeyError, k);
    return r;
}

static PyObject *Map_get(MapObject *self, PyObject *const *a, Py_ssize_t n)
{
    if (n < 1 || n > 2) {
        PyErr_SetString(PyExc_TypeError, "get(key, default=None)");
        return NULL;
    }
    bool missing;
    PyObject *r = map_get(self, a[0], &missing);
    if (missing) return Py_NewRef(n == 2 ? a[1] : Py_None);
    return r;
}

/* m[key] = value, or del m[key] (v NULL). */
static int Map_ass_subscript(MapObject *self, PyObject *k, PyObject *v)
{
    if (map_enter(self) != 0) return -1;
    shmrpc_buf json, kb, vb;
    shmrpc_buf_init(&json);
    shmrpc_buf_init(&kb);
    shmrpc_buf_init(&vb);
    int r = -1;
    if (map_key(self, k, &json, &kb) == 0 &&
        (v == NULL || to_body(self->sig, v, "value", &json, &vb) == 0)) {
        int rc;
        char msg[512] = "";
        Py_BEGIN_ALLOW_THREADS;
        rc = v == NULL ? shmrpc_map_remove(self->m, kb.data, kb.len)
                       : shmrpc_map_put(self->m, kb.data, kb.len, vb.data, vb.len);
        if (rc != 0) snprintf(msg, sizeof msg, "%s", shmrpc_errmsg());
        Py_END_ALLOW_THREADS;
        if (rc == SHMRPC_ENOENT && v == NULL)
            PyErr_SetObject(PyExc_KeyError, k);
        else if (rc != 0)
            pyshm_raise_status(rc, self->name, msg);
        else
            r = 0;
    }
    shmrpc_buf_destroy(&json);
    shmrpc_buf_destroy(&kb);
    shmrpc_buf_destroy(&vb);
    PyThread_release_lock(self->lock);
    return r;
}

static Py_ssize_t Map_len(MapObject *self)
{
    if (map_enter(self) != 0) return -1;
    uint64_t n = 0;
    int rc = shmrpc_map_size(self->m, &n);
    if (rc != 0) pyshm_raise_status(rc, self->name, shmrpc_errmsg());
    PyThread_release_lock(self->lock);
    return rc == 0 ? (Py_ssize_t)n : -1;
}

typedef struct {
    MapObject *self;
    PyObject *list;
    shmrpc_buf *json;
} iter_arg;

static int collect(void *arg, const void *key, size_t klen, const void *value, size_t vlen)
{
    iter_arg *a = arg;
    PyObject *k = from_body(a->self->sig ? &a->self->key_sig : NULL, key, klen, a->json, "key");
    PyObject *v = k ? from_body(a->self->sig, value, vlen, a->json, a->self->name) : NULL;
    PyObject *kv = v ? PyTuple_Pack(2, k, v) : NULL;
    int rc = kv != NULL && PyList_Append(a->list, kv) == 0 ? 0 : 1;
    Py_XDECREF(k), Py_XDECREF(v), Py_XDECREF(kv);
    return rc;
}

/* items(): a list of (key, value) of one consistent snapshot (the GIL held: the snapshot
 * is read without waiting for writers, docs/map.md). */
static PyObject *Map_items(MapObject *self, PyObject *unused)
{
    (void)unused;
    if (map_enter(self) != 0) return NULL;
    shmrpc_buf json;
    shmrpc_buf_init(&json);
    iter_arg a = {self, PyList_New(0), &json};
    int rc = a.list ? shmrpc_map_iterate(self->m, collect, &a) : 1;
    if (rc != 0) {
        if (!PyErr_Occurred()) pyshm_raise_status(rc, self->name, shmrpc_errmsg());
        Py_CLEAR(a.list);
    }
    shmrpc_buf_destroy(&json);
    PyThread_release_lock(self->lock);
    return a.list;
}

static PyObject *Map_close(MapObject *self, PyObject *unused)
{
    (void)unused;
    if (self->lock == NULL || self->m == NULL) Py_RETURN_NONE;
    if (map_enter(self) != 0) return NULL;
    shmrpc_map_close(self->m);
    self->m = NULL;
    PyThread_release_lock(self->lock);
    Py_RETURN_NONE;
}

static PyObject *Map_exit(MapObject *self, PyObject *args)
{
    (void)args;
    return Map_close(self, NULL);
}

static PyObject *Map_type(MapObject *self, void *unused)
{
    (void)unused;
    if (map_enter(self) != 0) return NULL;
    shmrpc_map_info info;
    int rc = shmrpc_map_get_info(self->m, &info);
    PyObject *r = rc != 0      ? pyshm_raise_status(rc, self->name, shmrpc_errmsg())
                  : *info.type ? PyUnicode_FromString(info.type)
                               : Py_NewRef(Py_None);
    PyThread_release_lock(self->lock);
    return r;
}

static PyObject *Map_unlink(PyObject *cls, PyObject *name)
{
    (void)cls;
    const char *s = PyUnicode_AsUTF8(name);
    if (s == NULL) return NULL;
    int rc = shmrpc_map_unlink(s);
    if (rc != 0) return pyshm_raise_status(rc, s, shmrpc_errmsg());
    Py_RETURN_NONE;
}

static PyMethodDef Map_methods[] = {
    {"get", (PyCFunction)(void (*)(void))Map_get, METH_FASTCALL,
     "get(key, default=None): the key's value, or default when absent."},
    {"items", (PyCFunction)Map_items, METH_NOARGS,
     "items(): [(key, value)] of one consistent snapshot, in no particular order."},
    {"close", (PyCFunction)Map_close, METH_NOARGS, "Unmaps the map."},
    {"unlink", (PyCFunction)Map_unlink, METH_O | METH_STATIC,
     "Map.unlink(name): removes the map (open handles keep it)."},
    {"__enter__", enter, METH_NOARGS, NULL},
    {"__exit__", (PyCFunction)Map_exit, METH_VARARGS, NULL},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef Map_getset[] = {
    {"type", (getter)Map_type, NULL, "The stored type signature (None: bytes to bytes).", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyMappingMethods Map_mapping = {
    .mp_length = (lenfunc)Map_len,
    .mp_subscript = (binaryfunc)Map_subscript,
    .mp_ass_subscript = (objobjargproc)Map_ass_subscript,
};

static PyTypeObject MapType = {
    PYSHM_TYPE("shmrpc.Map", MapObject, 0,
               "Map(name, *, create=False, type=None)\n\nA shared map by name (docs/map.md): "
               "m[key], m[key] = value, del m[key], len(m), m.get(key), m.items(). A typed "
               "one converts by its stored type, an untyped one takes bytes. Safe to share "
               "between threads (a lock per handle)."),
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)Map_init,
    .tp_dealloc = (destructor)Map_dealloc,
    .tp_methods = Map_methods,
    .tp_getset = Map_getset,
    .tp_as_mapping = &Map_mapping,
};

int pyshm_store_init(PyObject *module)
{
    if (PyType_Ready(&QueueType) != 0 || PyType_Ready(&MapType) != 0 ||
        pyshm_dict_init(module) != 0 || pyshm_lock_init(module) != 0)
        return -1;
    if (PyModule_AddObjectRef(module, "Queue", (PyObject *)&QueueType) != 0 ||
        PyModule_AddObjectRef(module, "Map", (PyObject *)&MapType) != 0)
        return -1;
    return 0;
}
